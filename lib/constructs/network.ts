import * as ec2 from 'aws-cdk-lib/aws-ec2'
import * as logs from 'aws-cdk-lib/aws-logs'
import { Construct } from 'constructs'

export interface SandboxNetworkProps {
  readonly logRetention: logs.RetentionDays
}

/**
 * The sandbox's network: a VPC with no way out to the internet.
 *
 * - Only PRIVATE_ISOLATED subnets: no NAT gateway, no internet gateway, no route out. The one
 *   route besides the local one is the S3 gateway endpoint's (SandboxS3Access), which reaches
 *   only this stack's bucket.
 * - DNS support on, because the runner resolves the S3 names of its presigned URLs; the
 *   resolver answers only S3 names (SandboxDnsFirewall), so query names cannot carry data
 *   anywhere else. DNS hostnames stay off: nothing in the VPC needs a name of its own.
 * - A security group with no ingress; its only egress (HTTPS) is added by SandboxS3Access.
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
      enableDnsSupport: true,
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
      description: 'Sandbox Lambda: no ingress; egress HTTPS only (to S3 through the gateway endpoint)',
      allowAllOutbound: false,
    })
  }
}
