import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb'
import * as iam from 'aws-cdk-lib/aws-iam'
import type * as lambda from 'aws-cdk-lib/aws-lambda'
import type * as logs from 'aws-cdk-lib/aws-logs'
import type * as s3 from 'aws-cdk-lib/aws-s3'
import { Stack, Validations, type CfnElement } from 'aws-cdk-lib'
import type { Construct } from 'constructs'
import type { InterpreterConfig } from '../config'
import { ServiceFunction } from './service-function'
import { UPLOADS_PREFIX } from './storage'

export { bedrockModelArns, MODEL_ACTIONS, OBJECT_ACTIONS, TABLE_ACTIONS } from './service-function'

/**
 * On `uploads/*`, the API role only: PutObject (the client's presigned PUT carries it), GetObject
 * (HeadObject, and reading the source of the CopyObject to `files/`) and DeleteObject (the staging
 * object, once copied or refused). Nothing else needs the prefix.
 */
export const UPLOAD_ACTIONS = ['s3:GetObject', 's3:PutObject', 's3:DeleteObject']

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
 * plus invoking the background worker and the staging prefix of presigned uploads.
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
    const uploads = `${UPLOADS_PREFIX}*`
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'StagedUploads',
        actions: UPLOAD_ACTIONS,
        resources: [props.bucket.arnForObjects(uploads)],
      }),
    )
    const bucketId = Stack.of(this).getLogicalId(props.bucket.node.defaultChild as CfnElement)
    Validations.of(this.role.node.findChild('DefaultPolicy')).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/${uploads}]`,
      reason:
        'Presigned uploads are staged under per-organization names created at run time (uploads/<org>/<file_id>), so no fixed key narrows it further; the grant covers this one prefix of this one bucket, for the API function only',
    })
  }
}
