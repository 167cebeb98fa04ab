import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb'
import * as iam from 'aws-cdk-lib/aws-iam'
import type * as lambda from 'aws-cdk-lib/aws-lambda'
import type * as logs from 'aws-cdk-lib/aws-logs'
import type * as s3 from 'aws-cdk-lib/aws-s3'
import type { Construct } from 'constructs'
import type { InterpreterConfig } from '../config'
import { ServiceFunction } from './service-function'

export { bedrockModelArns, MODEL_ACTIONS, OBJECT_ACTIONS, TABLE_ACTIONS } from './service-function'

export interface ApiFunctionProps {
  readonly config: InterpreterConfig
  readonly sandbox: lambda.IFunction
  readonly table: dynamodb.ITableV2
  readonly bucket: s3.IBucket
  readonly logRetention: logs.RetentionDays
  /** The background worker, invoked asynchronously for background responses. */
  readonly worker: lambda.IFunction
}

/**
 * The API Lambda (Node 22, outside the VPC): authenticates API keys, runs the assistant loop,
 * calls Bedrock and invokes the sandbox once per code block. Its rights: see ServiceFunction,
 * plus invoking the background worker.
 */
export class ApiFunction extends ServiceFunction {
  constructor(scope: Construct, id: string, props: ApiFunctionProps) {
    const { worker, ...rest } = props
    super(scope, id, {
      ...rest,
      entry: 'functions/handlers/api.ts',
      description: 'Code interpreter REST API',
      roleDescription: 'API Lambda: own logs, the sandbox, the worker, its table and bucket, configured models',
      environment: { WORKER_FUNCTION_NAME: worker.functionName },
    })
    // The unqualified ARN only (not worker.grantInvoke, which adds `<arn>:*`): the API never
    // invokes a version or alias.
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'InvokeWorker',
        actions: ['lambda:InvokeFunction'],
        resources: [worker.functionArn],
      }),
    )
  }
}
