import { Duration, Size, Validations } from 'aws-cdk-lib'
import * as ec2 from 'aws-cdk-lib/aws-ec2'
import { Platform } from 'aws-cdk-lib/aws-ecr-assets'
import * as iam from 'aws-cdk-lib/aws-iam'
import * as lambda from 'aws-cdk-lib/aws-lambda'
import * as logs from 'aws-cdk-lib/aws-logs'
import { Construct } from 'constructs'
import { type InterpreterConfig, sandboxTimeoutSeconds } from '../config'
import { projectPath } from '../paths'

/** What Lambda needs to attach a function to a VPC (AWSLambdaENIManagementAccess's actions). */
export const SANDBOX_ENI_ACTIONS = [
  'ec2:CreateNetworkInterface',
  'ec2:DescribeNetworkInterfaces',
  'ec2:DescribeSubnets',
  'ec2:DeleteNetworkInterface',
  'ec2:AssignPrivateIpAddresses',
  'ec2:UnassignPrivateIpAddresses',
]

export const SANDBOX_LOG_ACTIONS = ['logs:CreateLogStream', 'logs:PutLogEvents']

/** Writing to its own log group, and no other: what every function of the stack gets for logs. */
export const ownLogGroupOnly = (logGroup: logs.ILogGroup) =>
  new iam.PolicyStatement({ sid: 'OwnLogGroupOnly', actions: SANDBOX_LOG_ACTIONS, resources: [logGroup.logGroupArn] })

export interface SandboxFunctionProps {
  readonly config: InterpreterConfig['sandbox']
  readonly vpc: ec2.IVpc
  readonly securityGroup: ec2.ISecurityGroup
  readonly logRetention: logs.RetentionDays
  /** Directory with the sandbox's Dockerfile; the repository's python-runtime/ by default. */
  readonly imageDirectory?: string
}

/**
 * How `cdk deploy` builds the sandbox image (`docker build --platform linux/arm64
 * --output=type=docker`): one platform, loaded into the local image store with Docker media
 * types, whatever the buildx driver (a docker-container builder would otherwise keep the result
 * in its cache only, and the push would find no image). Lambda refuses an image index, which
 * BuildKit makes as soon as provenance or SBOM attestations are attached; the CDK CLI's asset
 * publisher turns the default attestations off for its builds (BUILDX_NO_DEFAULT_ATTESTATIONS=1,
 * checked against the pinned CLI in test/cdk/sandbox-image.test.ts). docs/deploy.md has the rest.
 */
export const SANDBOX_IMAGE_BUILD: Pick<lambda.AssetImageCodeProps, 'platform' | 'outputs'> = {
  platform: Platform.LINUX_ARM64,
  outputs: ['type=docker'],
}

/** Memory kept for the runner, the zygote and its pre-imported stack (measured Pss about 200 MiB). */
export const SANDBOX_RESERVED_MB = 384
/** The runner's cache of session state parts: an eighth of the memory, at most 256 MiB. */
export const stateCacheMb = (memoryMb: number) => Math.min(256, Math.floor(memoryMb / 8))

/**
 * The Python sandbox: one invocation runs one code block of model-written code.
 * Everything here assumes the code is hostile: no network, a role that can do nothing from
 * inside, and (by default) one execution environment per organization.
 */
export class SandboxFunction extends Construct {
  readonly function: lambda.DockerImageFunction
  readonly role: iam.Role
  readonly logGroup: logs.LogGroup

  constructor(scope: Construct, id: string, props: SandboxFunctionProps) {
    super(scope, id)
    const { config } = props

    this.logGroup = new logs.LogGroup(this, 'Logs', { retention: props.logRetention })

    // A hand-written role instead of the two managed policies CDK would attach: logs only to
    // this function's log group, and the ENI rights Lambda itself needs for the VPC.
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'Sandbox Lambda: own logs and VPC network interfaces, nothing else',
    })
    this.role.addToPolicy(ownLogGroupOnly(this.logGroup))
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'LambdaManagesVpcInterfaces',
        actions: SANDBOX_ENI_ACTIONS,
        resources: ['*'],
      }),
    )
    // Lambda's own ENI calls carry no lambda:SourceFunctionArn; calls made with the credentials
    // inside the environment do. So code in the sandbox cannot use the ENI rights above.
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'NoEniCallsFromInsideTheSandbox',
        effect: iam.Effect.DENY,
        actions: SANDBOX_ENI_ACTIONS,
        resources: ['*'],
        conditions: { Null: { 'lambda:SourceFunctionArn': 'false' } },
      }),
    )
    Validations.of(this.role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'Lambda needs the ENI actions to attach the sandbox to its VPC; DescribeNetworkInterfaces and DescribeSubnets support no resource scoping, and the Deny statement stops code inside the sandbox from using any of them',
    })

    this.function = new lambda.DockerImageFunction(this, 'Function', {
      description: 'Runs one block of untrusted Python per invocation',
      code: lambda.DockerImageCode.fromImageAsset(props.imageDirectory ?? projectPath('python-runtime'), {
        cmd: ['sandbox.runner.handler'],
        ...SANDBOX_IMAGE_BUILD,
        exclude: ['**/__pycache__', '**/.pytest_cache', '**/.venv'],
      }),
      architecture: lambda.Architecture.ARM_64,
      timeout: Duration.seconds(sandboxTimeoutSeconds(config.codeTimeoutMs)),
      memorySize: config.memoryMb,
      ephemeralStorageSize: Size.mebibytes(config.ephemeralStorageMb),
      reservedConcurrentExecutions: config.reservedConcurrency ?? undefined,
      environment: {
        CODE_TIMEOUT_MS: String(config.codeTimeoutMs),
        // The block's budget on top of the pre-imported stack; the runner and zygote need the rest.
        SANDBOX_MEMORY_MB: String(Math.max(128, config.memoryMb - SANDBOX_RESERVED_MB - stateCacheMb(config.memoryMb))),
        // Warm state parts (a DataFrame carried between blocks) are not fetched again.
        SANDBOX_STATE_CACHE_MB: String(stateCacheMb(config.memoryMb)),
        // With tenant isolation the runner also refuses a second organization itself.
        SANDBOX_SINGLE_TENANT: config.tenantIsolation ? '1' : '0',
      },
      // Set at creation only: switching it later replaces the function.
      tenancyConfig: config.tenantIsolation ? lambda.TenancyConfig.PER_TENANT : undefined,
      role: this.role,
      logGroup: this.logGroup,
      vpc: props.vpc,
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_ISOLATED },
      securityGroups: [props.securityGroup],
    })
  }
}
