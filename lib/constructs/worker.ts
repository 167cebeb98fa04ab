import { Duration } from 'aws-cdk-lib'
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb'
import type * as lambda from 'aws-cdk-lib/aws-lambda'
import type * as logs from 'aws-cdk-lib/aws-logs'
import type * as s3 from 'aws-cdk-lib/aws-s3'
import type { Construct } from 'constructs'
import type { InterpreterConfig } from '../config'
import { ServiceFunction } from './service-function'

/**
 * How long a background run may take (the run loop's deadline, RESPONSE_DEADLINE_MS). The same
 * value as functions/config.ts's default, set explicitly so the worker's timeout follows from it.
 */
export const WORKER_RESPONSE_DEADLINE_MS = 240_000
/** Seconds the worker gets beyond the deadline: the step in flight ends and the response is stored. */
export const WORKER_TIMEOUT_MARGIN_SECONDS = 60
/** The worker's Lambda timeout (5 min by default; Lambda allows at most 15). */
export const WORKER_TIMEOUT = Duration.seconds(Math.ceil(WORKER_RESPONSE_DEADLINE_MS / 1_000) + WORKER_TIMEOUT_MARGIN_SECONDS)
/**
 * Lambda's own retries of a failed asynchronous invoke: none. A background run must not run
 * twice (a second run would redo its model calls and code blocks under the same response id), and
 * the worker stores a failed run itself (core/background.ts), so a retry could add nothing.
 */
export const WORKER_RETRY_ATTEMPTS = 0

export interface WorkerFunctionProps {
  readonly config: InterpreterConfig
  readonly sandbox: lambda.IFunction
  readonly table: dynamodb.ITableV2
  readonly bucket: s3.IBucket
  readonly logRetention: logs.RetentionDays
}

/**
 * The background worker (functions/handlers/worker.ts): the API invokes it asynchronously
 * (InvocationType Event) with one queued response, which it runs through the same run loop as
 * POST /v1/responses and stores. Same environment and rights as the API function (see
 * ServiceFunction); it invokes no other function.
 */
export class WorkerFunction extends ServiceFunction {
  constructor(scope: Construct, id: string, props: WorkerFunctionProps) {
    super(scope, id, {
      ...props,
      entry: 'functions/handlers/worker.ts',
      description: 'Runs one background response and stores it',
      roleDescription: 'Worker Lambda: own logs, the sandbox, its table and bucket, configured models',
      environment: { RESPONSE_DEADLINE_MS: String(WORKER_RESPONSE_DEADLINE_MS) },
      functionProps: {
        timeout: WORKER_TIMEOUT,
        retryAttempts: WORKER_RETRY_ATTEMPTS,
      },
    })
  }
}
