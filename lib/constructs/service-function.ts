import { Aws, type CfnElement, Duration, Stack, Validations } from 'aws-cdk-lib'
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb'
import * as iam from 'aws-cdk-lib/aws-iam'
import * as lambda from 'aws-cdk-lib/aws-lambda'
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs'
import * as logs from 'aws-cdk-lib/aws-logs'
import type * as s3 from 'aws-cdk-lib/aws-s3'
import { Construct } from 'constructs'
import type { InterpreterConfig } from '../config'
import { projectPath } from '../paths'
import { ownLogGroupOnly } from './sandbox'
import { OBJECT_PREFIXES } from './storage'

// Exact action lists, so the tests can pin them. Scan and table administration are left out.
export const TABLE_ACTIONS = [
  'dynamodb:GetItem',
  'dynamodb:BatchGetItem',
  'dynamodb:Query',
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:BatchWriteItem',
  'dynamodb:ConditionCheckItem',
]
// On `files/*` and `state/*` only, and no s3:ListBucket: a missing object then answers 403 (not
// 404), which the functions treat as missing. Presigned URLs carry these rights, nothing more.
export const OBJECT_ACTIONS = ['s3:GetObject', 's3:PutObject', 's3:DeleteObject']
export const MODEL_ACTIONS = ['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream']

/** Geographic and global cross-Region inference profiles carry a prefix before the model id. */
const INFERENCE_PROFILE_PREFIX = /^(us|us-gov|eu|apac|jp|au|ca|global)\.(.+)$/

/**
 * IAM resources for one configured model id. An inference profile needs its own ARN and the
 * foundation model in every Region it may route to (so a Region wildcard); a global profile
 * additionally needs the Region-less foundation-model ARN.
 */
export function bedrockModelArns(modelId: string): string[] {
  const profile = INFERENCE_PROFILE_PREFIX.exec(modelId)
  if (!profile) return [`arn:${Aws.PARTITION}:bedrock:${Aws.REGION}::foundation-model/${modelId}`]
  const [, geography, baseModelId] = profile
  const arns = [
    `arn:${Aws.PARTITION}:bedrock:${Aws.REGION}:${Aws.ACCOUNT_ID}:inference-profile/${modelId}`,
    `arn:${Aws.PARTITION}:bedrock:*::foundation-model/${baseModelId}`,
  ]
  if (geography === 'global') arns.push(`arn:${Aws.PARTITION}:bedrock:::foundation-model/${baseModelId}`)
  return arns
}

/** The environment that turns Node's source-map support on (only with `api.sourceMaps`). */
export const SOURCE_MAP_NODE_OPTIONS = '--enable-source-maps'

/**
 * What every Node function of the service shares: the handler module (relative to the project
 * root, exporting `handler`), Node 22 on arm64, bundled by local esbuild to ESM.
 *
 * `sourceMaps` (config `api.sourceMaps`) adds an external `index.mjs.map` to the bundle; pair it
 * with `nodeSourceMapEnvironment` so Node uses it. Off, the bundle carries no map and Node
 * parses none at cold start.
 */
export function nodeFunctionProps(entry: string, options: { readonly sourceMaps: boolean }) {
  return {
    entry: projectPath(entry),
    handler: 'handler',
    projectRoot: projectPath(),
    depsLockFilePath: projectPath('package-lock.json'),
    // Node 22, not 24: middy 7 and @types/node 22 are what the handlers are built and tested with.
    runtime: lambda.Runtime.NODEJS_22_X,
    architecture: lambda.Architecture.ARM_64,
    bundling: {
      format: nodejs.OutputFormat.ESM,
      target: 'node22',
      mainFields: ['module', 'main'],
      // Some CommonJS dependencies call require(); ESM output has none unless we make one.
      banner: "import { createRequire } from 'node:module';const require = createRequire(import.meta.url);",
      // Bundle the pinned AWS SDK: Invoke's TenantId needs a newer client than the runtime may ship.
      externalModules: [],
      minify: true,
      sourceMap: options.sourceMaps,
      sourcesContent: false,
    },
  } satisfies Partial<nodejs.NodejsFunctionProps>
}

/** `NODE_OPTIONS` for a Node function: source-map support only when the bundle has maps. */
export function nodeSourceMapEnvironment(sourceMaps: boolean): Record<string, string> {
  return sourceMaps ? { NODE_OPTIONS: SOURCE_MAP_NODE_OPTIONS } : {}
}

/** The pinned runtime is a choice, not an oversight (cdk-nag AwsSolutions-L1). */
export function acknowledgeNodeRuntime(fn: lambda.IFunction): void {
  Validations.of(fn).acknowledge({
    id: 'AwsSolutions-L1',
    reason:
      'Pinned to nodejs22.x on purpose: the handlers, middy 7 and @types/node 22 are built and tested for Node 22, and Node 22 stays in maintenance LTS until April 2027',
  })
}

export interface ServiceFunctionProps {
  readonly config: InterpreterConfig
  readonly sandbox: lambda.IFunction
  readonly table: dynamodb.ITableV2
  readonly bucket: s3.IBucket
  readonly logRetention: logs.RetentionDays
  /** The handler module, relative to the project root (exports `handler`). */
  readonly entry: string
  readonly description: string
  readonly roleDescription: string
  /** Environment variables beyond the shared ones (added last, so they may override one). */
  readonly environment?: Record<string, string>
  /** Further function settings (e.g. asynchronous invocation retries and a dead-letter queue). */
  readonly functionProps?: Partial<nodejs.NodejsFunctionProps>
}

/**
 * A Node function of the service (the API, the background worker, the scheduled runs): Node 22
 * on arm64, outside the VPC, bundled by local esbuild, with the same environment and exactly
 * these rights: its own log group, invoking the sandbox, its table, the `files/` and `state/`
 * objects of its bucket (the presigned URLs it hands the sandbox and clients carry these), and
 * the configured Bedrock models. The children keep the ids Logs, Role and Function, so
 * subclasses keep their logical ids.
 */
export class ServiceFunction extends Construct {
  readonly function: nodejs.NodejsFunction
  readonly role: iam.Role
  readonly logGroup: logs.LogGroup

  constructor(scope: Construct, id: string, props: ServiceFunctionProps) {
    super(scope, id)
    const { config } = props

    const logGroup = new logs.LogGroup(this, 'Logs', { retention: props.logRetention })
    this.logGroup = logGroup
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: props.roleDescription,
    })

    this.function = new nodejs.NodejsFunction(this, 'Function', {
      ...nodeFunctionProps(props.entry, { sourceMaps: config.api.sourceMaps }),
      description: props.description,
      memorySize: config.api.memoryMb,
      timeout: Duration.seconds(config.api.timeoutSeconds),
      role: this.role,
      logGroup,
      environment: {
        SANDBOX_FUNCTION_NAME: props.sandbox.functionName,
        SANDBOX_TENANT_ISOLATION: String(config.sandbox.tenantIsolation),
        TABLE_NAME: props.table.tableName,
        BUCKET_NAME: props.bucket.bucketName,
        FILE_MAX_BYTES: String(config.files.maxFileBytes),
        CODE_TIMEOUT_MS: String(config.sandbox.codeTimeoutMs),
        // The model factory reads BEDROCK_MODEL_ID (the default model); an assistant may name
        // any of the configured ids, the only ones the role may call.
        MODEL_PROVIDER: 'bedrock',
        BEDROCK_MODEL_ID: config.bedrockModelIds[0]!,
        BEDROCK_MODEL_IDS: config.bedrockModelIds.join(','),
        ...nodeSourceMapEnvironment(config.api.sourceMaps),
        ...props.environment,
      },
      ...props.functionProps,
    })
    acknowledgeNodeRuntime(this.function)

    this.role.addToPolicy(ownLogGroupOnly(logGroup))
    // The unqualified ARN only: the API never invokes a version or alias.
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'InvokeSandbox',
        actions: ['lambda:InvokeFunction'],
        resources: [props.sandbox.functionArn],
      }),
    )
    this.role.addToPolicy(
      new iam.PolicyStatement({ sid: 'OwnTable', actions: TABLE_ACTIONS, resources: [props.table.tableArn] }),
    )
    const objectPatterns = OBJECT_PREFIXES.map((prefix) => `${prefix}*`)
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'OwnBucketFilesAndState',
        actions: OBJECT_ACTIONS,
        resources: objectPatterns.map((pattern) => props.bucket.arnForObjects(pattern)),
      }),
    )
    const modelArns = config.bedrockModelIds.flatMap(bedrockModelArns)
    this.role.addToPolicy(
      new iam.PolicyStatement({ sid: 'ConfiguredModels', actions: MODEL_ACTIONS, resources: modelArns }),
    )

    const policy = this.role.node.findChild('DefaultPolicy')
    for (const pattern of objectPatterns) {
      Validations.of(policy).acknowledge({
        id: `AwsSolutions-IAM5[Resource::<${logicalIdOf(props.bucket)}.Arn>/${pattern}]`,
        reason:
          'Object keys are created at run time under per-organization names (files/<org>/<file_id>, state/<org>/<session>/...), so no fixed key narrows it further; the grant covers these two prefixes of this one bucket only',
      })
    }
    for (const arn of modelArns.filter((a) => a.includes('*'))) {
      Validations.of(policy).acknowledge({
        id: `AwsSolutions-IAM5[Resource::${nagResource(arn)}]`,
        reason:
          'A cross-Region inference profile routes this one configured model to any Region of its geography (every commercial Region for global.*), so only the Region is a wildcard',
      })
    }
  }
}

function logicalIdOf(construct: Construct): string {
  return Stack.of(construct).getLogicalId(construct.node.defaultChild as CfnElement)
}

/** How cdk-nag prints an ARN built from pseudo parameters. */
function nagResource(arn: string): string {
  return arn
    .replace(Aws.PARTITION, '<AWS::Partition>')
    .replace(Aws.REGION, '<AWS::Region>')
    .replace(Aws.ACCOUNT_ID, '<AWS::AccountId>')
}
