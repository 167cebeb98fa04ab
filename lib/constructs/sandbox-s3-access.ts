import * as ec2 from 'aws-cdk-lib/aws-ec2'
import * as iam from 'aws-cdk-lib/aws-iam'
import type * as s3 from 'aws-cdk-lib/aws-s3'
import { Construct } from 'constructs'
import { OBJECT_PREFIXES } from './storage'

/** What a presigned URL handed to the sandbox may do: fetch an input, store an output. */
export const SANDBOX_S3_ACTIONS = ['s3:GetObject', 's3:PutObject']
export const SANDBOX_S3_PORT = 443

export interface SandboxS3AccessProps {
  readonly vpc: ec2.IVpc
  readonly securityGroup: ec2.SecurityGroup
  readonly bucket: s3.IBucket
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
 * invoking function signed; the code never sees those URLs (and seccomp gives it no socket).
 *
 * - An S3 gateway endpoint on the isolated subnets' route tables: the only route out of the VPC,
 *   and it leads to S3 in this Region only (no NAT, no internet gateway).
 * - Its endpoint policy allows s3:GetObject and s3:PutObject on `files/*` and `state/*` of this
 *   bucket, for requests signed by the signer roles only. Any other bucket, action or principal
 *   (the sandbox's own role included) is refused at the endpoint, before IAM is even asked.
 * - Security group egress: TCP 443 only. The destination is 0.0.0.0/0 because the S3 managed
 *   prefix list id needs a context lookup (no offline synth); the route table, whose only way
 *   out is the gateway endpoint, is what confines 443 to S3, and the endpoint policy confines it
 *   to this bucket. DNS to the VPC resolver is not security-group filtered (SandboxDnsFirewall
 *   governs it).
 */
export class SandboxS3Access extends Construct {
  readonly endpoint: ec2.GatewayVpcEndpoint

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

    props.securityGroup.addEgressRule(
      ec2.Peer.anyIpv4(),
      ec2.Port.tcp(SANDBOX_S3_PORT),
      'HTTPS to S3 via the gateway endpoint (the only route out)',
    )
  }
}
