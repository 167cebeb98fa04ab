import * as ec2 from 'aws-cdk-lib/aws-ec2'
import * as logs from 'aws-cdk-lib/aws-logs'
import { Construct } from 'constructs'

export interface SandboxNetworkProps {
  readonly logRetention: logs.RetentionDays
}

/**
 * The sandbox's network: a VPC that reaches nothing.
 *
 * - Only PRIVATE_ISOLATED subnets: no NAT gateway, no internet gateway, no route out.
 * - No VPC endpoints: even the role's own credentials are useless from inside.
 * - DNS off (enableDnsSupport: false): the Amazon resolver would otherwise answer, and carry
 *   data out in query names. The runner resolves no names, so nothing needs it.
 * - A security group with no egress rule at all.
 * - Flow logs, so any attempt to reach out shows up as REJECT records.
 */
export class SandboxNetwork extends Construct {
  readonly vpc: ec2.Vpc
  readonly securityGroup: ec2.SecurityGroup

  constructor(scope: Construct, id: string, props: SandboxNetworkProps) {
    super(scope, id)

    this.vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: 0,
      enableDnsSupport: false,
      enableDnsHostnames: false,
      subnetConfiguration: [
        { name: 'sandbox', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 24 },
      ],
      // Keep the default SG closed too (feature flag default, stated here so it cannot drift).
      restrictDefaultSecurityGroup: true,
    })

    const flowLogGroup = new logs.LogGroup(this, 'FlowLogs', { retention: props.logRetention })
    this.vpc.addFlowLog('FlowLog', {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogGroup),
      trafficType: ec2.FlowLogTrafficType.ALL,
    })

    this.securityGroup = new ec2.SecurityGroup(this, 'SandboxSecurityGroup', {
      vpc: this.vpc,
      description: 'Sandbox Lambda: no ingress, no egress',
      allowAllOutbound: false,
    })
  }
}
