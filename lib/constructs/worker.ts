import { Duration } from 'aws-cdk-lib'
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb'
import * as iam from 'aws-cdk-lib/aws-iam'
import type * as lambda from 'aws-cdk-lib/aws-lambda'
import type * as logs from 'aws-cdk-lib/aws-logs'
import type * as s3 from 'aws-cdk-lib/aws-s3'
import type * as sqs from 'aws-cdk-lib/aws-sqs'
import type { Construct } from 'constructs'
import type { InterpreterConfig } from '../config'
import { FailedRuns } from './failed-runs'
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
/**
 * How long Lambda keeps trying to deliver a background run (throttled, or Lambda's own errors)
 * before it drops the event and reports it to the failure destination: 5 min, not Lambda's
 * default 6 hours. That is the reservation the API holds on the run's session (the deadline plus
 * a minute, core/responses.ts; the same as WORKER_TIMEOUT), so a run starts while its session is
 * still reserved for it, or not at all, and a reader may take a run no worker took after that
 * time (plus a margin) as never started (core/abandoned-runs.ts). AWS allows 60 s to 6 hours.
 */
export const WORKER_MAX_EVENT_AGE = Duration.seconds(Math.ceil(WORKER_RESPONSE_DEADLINE_MS / 1_000) + WORKER_TIMEOUT_MARGIN_SECONDS)

/**
 * An SQS on-failure destination whose grant is what Lambda uses to deliver the record and no more:
 * sqs:SendMessage on this one queue, for the function's role (aws-lambda-destinations'
 * SqsDestination also grants sqs:GetQueueAttributes and sqs:GetQueueUrl). The queue is encrypted
 * with SQS-managed keys, so no KMS right is needed.
 */
export class SendOnlySqsDestination implements lambda.IDestination {
  constructor(private readonly queue: sqs.IQueue) {}

  bind(_scope: Construct, fn: lambda.IFunction): lambda.DestinationConfig {
    fn.addToRolePolicy(new iam.PolicyStatement({ sid: 'FailedInvocationRecords', actions: ['sqs:SendMessage'], resources: [this.queue.queueArn] }))
    return { destination: this.queue.queueArn }
  }
}

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
 * ServiceFunction), plus sending its failed invocations' records to its failure queue; it
 * invokes no other function.
 *
 * An invocation that fails without storing its run (timeout, out of memory, crash) and an event
 * dropped after WORKER_MAX_EVENT_AGE go to that queue (on-failure destination), whose handler
 * stores the run `failed` and releases its session (FailedRuns).
 */
export class WorkerFunction extends ServiceFunction {
  readonly failedRuns: FailedRuns

  constructor(scope: Construct, id: string, props: WorkerFunctionProps) {
    super(scope, id, {
      ...props,
      entry: 'functions/handlers/worker.ts',
      description: 'Runs one background response and stores it',
      roleDescription: 'Worker Lambda: own logs, the sandbox, its table and bucket, configured models, its failure queue',
      environment: { RESPONSE_DEADLINE_MS: String(WORKER_RESPONSE_DEADLINE_MS) },
      functionProps: { timeout: WORKER_TIMEOUT },
    })
    this.failedRuns = new FailedRuns(this, 'FailedRuns', {
      table: props.table,
      bucket: props.bucket,
      logRetention: props.logRetention,
      sourceMaps: props.config.api.sourceMaps,
    })
    // Lambda sends the records with the worker's role, which may send to this queue only.
    this.function.configureAsyncInvoke({
      retryAttempts: WORKER_RETRY_ATTEMPTS,
      maxEventAge: WORKER_MAX_EVENT_AGE,
      onFailure: new SendOnlySqsDestination(this.failedRuns.queue),
    })
  }
}
