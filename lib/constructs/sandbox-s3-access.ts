import { Validations } from 'aws-cdk-lib'
import * as ec2 from 'aws-cdk-lib/aws-ec2'
import * as iam from 'aws-cdk-lib/aws-iam'
import * as logs from 'aws-cdk-lib/aws-logs'
import type * as s3 from 'aws-cdk-lib/aws-s3'
import * as cr from 'aws-cdk-lib/custom-resources'
import { Construct } from 'constructs'
import { ownLogGroupOnly } from './sandbox'
import { OBJECT_PREFIXES } from './storage'

/** What a presigned URL handed to the sandbox may do: fetch an input, store an output. */
export const SANDBOX_S3_ACTIONS = ['s3:GetObject', 's3:PutObject']
export const SANDBOX_S3_PORT = 443
/** The one call the prefix-list lookup makes (it supports no resource-level scoping). */
export const PREFIX_LIST_LOOKUP_ACTIONS = ['ec2:DescribeManagedPrefixLists']
/** Where the lookup's answer carries the id (`pl-…`) of the first (only) matching list. */
export const PREFIX_LIST_ID_PATH = 'PrefixLists.0.PrefixListId'

export interface SandboxS3AccessProps {
  readonly vpc: ec2.IVpc
  readonly securityGroup: ec2.SecurityGroup
  readonly bucket: s3.IBucket
  readonly logRetention: logs.RetentionDays
  /**
   * The roles whose presigned URLs the sandbox may use: the functions that invoke it (API,
   * worker, schedule function). The sandbox's own role is never one of them.
   */
  readonly signers: iam.IRole[]
}

/**
 * The sandbox's one path out: HTTPS to this stack's bucket, for presigned URLs only.
 *
 * The runner GETs input files and PUTs outputs and state parts with presigned URLs that the
 * invoking function signed; the code never sees those URLs.
 *
 * - An S3 gateway endpoint on the isolated subnets' route tables: the only route out of the VPC,
 *   and it leads to S3 in this Region only (no NAT, no internet gateway).
 * - Its endpoint policy allows s3:GetObject and s3:PutObject on `files/*` and `state/*` of this
 *   bucket, for requests signed by the signer roles only. Any other bucket, action or principal
 *   (the sandbox's own role included) is refused at the endpoint, before IAM is even asked.
 * - Security group egress: TCP 443 to the Region's S3 managed prefix list (the address ranges
 *   the gateway endpoint routes), nothing else. Its id (`pl-…`) differs per Region, and a
 *   synth-time context lookup would need credentials and a fixed Region, so a custom resource
 *   looks it up at deploy time (ec2:DescribeManagedPrefixLists by the endpoint's service name).
 *   A lookup that finds no list fails the deploy instead of opening anything. DNS to the VPC
 *   resolver is not security-group filtered (SandboxDnsFirewall governs it).
 */
export class SandboxS3Access extends Construct {
  readonly endpoint: ec2.GatewayVpcEndpoint
  /** The deploy-time lookup of the S3 managed prefix list. */
  readonly prefixListLookup: cr.AwsCustomResource
  /** The S3 managed prefix list id (`pl-…`), resolved at deploy time. */
  readonly prefixListId: string

  constructor(scope: Construct, id: string, props: SandboxS3AccessProps) {
    super(scope, id)

    this.endpoint = new ec2.GatewayVpcEndpoint(this, 'Endpoint', {
      vpc: props.vpc,
      service: ec2.GatewayVpcEndpointAwsService.S3,
      subnets: [{ subnetType: ec2.SubnetType.PRIVATE_ISOLATED }],
    })
    this.endpoint.addToPolicy(
      new iam.PolicyStatement({
        sid: 'PresignedTransfersOfThisBucketOnly',
        principals: [new iam.AnyPrincipal()],
        actions: SANDBOX_S3_ACTIONS,
        resources: OBJECT_PREFIXES.map((prefix) => props.bucket.arnForObjects(`${prefix}*`)),
        conditions: { ArnEquals: { 'aws:PrincipalArn': props.signers.map((role) => role.roleArn) } },
      }),
    )

    // The gateway endpoint's routes go to the AWS-managed prefix list of the same name as its
    // service (com.amazonaws.<region>.s3), so the lookup asks for exactly that list.
    const prefixListName = ec2.GatewayVpcEndpointAwsService.S3.name
    const lookupLogs = new logs.LogGroup(this, 'PrefixListLookupLogs', { retention: props.logRetention })
    const lookupRole = new iam.Role(this, 'PrefixListLookupRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'Deploy-time lookup of the S3 managed prefix list id: own logs and DescribeManagedPrefixLists only',
    })
    lookupRole.addToPolicy(ownLogGroupOnly(lookupLogs))
    const describe: cr.AwsSdkCall = {
      service: 'EC2',
      action: 'describeManagedPrefixLists',
      parameters: { Filters: [{ Name: 'prefix-list-name', Values: [prefixListName] }] },
      physicalResourceId: cr.PhysicalResourceId.fromResponse(PREFIX_LIST_ID_PATH),
      outputPaths: [PREFIX_LIST_ID_PATH],
    }
    this.prefixListLookup = new cr.AwsCustomResource(this, 'S3PrefixList', {
      onCreate: describe,
      onUpdate: describe,
      policy: cr.AwsCustomResourcePolicy.fromStatements([
        new iam.PolicyStatement({ sid: 'DescribeManagedPrefixLists', actions: PREFIX_LIST_LOOKUP_ACTIONS, resources: ['*'] }),
      ]),
      // The provider Lambda is a stack-wide singleton: this role and log group would serve any
      // other AwsCustomResource of the stack too (today there is none).
      role: lookupRole,
      logGroup: lookupLogs,
      // The SDK in Lambda's Node runtime has this call; no npm install at deploy time.
      installLatestAwsSdk: false,
    })
    this.prefixListId = this.prefixListLookup.getResponseField(PREFIX_LIST_ID_PATH)
    Validations.of(this.prefixListLookup.node.findChild('CustomResourcePolicy')).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'ec2:DescribeManagedPrefixLists supports no resource-level permissions; the role can only read prefix-list metadata, once per deploy, to find the S3 list id',
    })

    props.securityGroup.addEgressRule(
      new InlinePrefixListPeer(this.prefixListId),
      ec2.Port.tcp(SANDBOX_S3_PORT),
      "HTTPS to S3 through the gateway endpoint (the Region's S3 prefix list), the only route out",
    )
  }
}

/**
 * A prefix-list peer that CDK puts inline in the group's SecurityGroupEgress (CloudFormation's
 * inline rule takes DestinationPrefixListId). `ec2.Peer.prefixList` is never inlined: its rule
 * becomes a separate AWS::EC2::SecurityGroupEgress and CDK drops the group's "match no traffic"
 * placeholder, so the group would be created with EC2's default allow-all egress and lose it only
 * when the separate rule lands. Inline, the group never has any egress but this rule.
 */
class InlinePrefixListPeer implements ec2.IPeer {
  readonly canInlineRule = true
  readonly uniqueId = 'S3PrefixList'
  readonly connections: ec2.Connections = new ec2.Connections({ peer: this })

  constructor(private readonly prefixListId: string) {}

  toIngressRuleConfig() {
    return { sourcePrefixListId: this.prefixListId }
  }

  toEgressRuleConfig() {
    return { destinationPrefixListId: this.prefixListId }
  }
}
