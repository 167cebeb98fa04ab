import { type CfnElement, Duration, Stack, Validations } from 'aws-cdk-lib'
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch'
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb'
import * as iam from 'aws-cdk-lib/aws-iam'
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources'
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs'
import * as logs from 'aws-cdk-lib/aws-logs'
import type * as s3 from 'aws-cdk-lib/aws-s3'
import * as sqs from 'aws-cdk-lib/aws-sqs'
import { Construct } from 'constructs'
import { ownLogGroupOnly } from './sandbox'
import { acknowledgeNodeRuntime, nodeFunctionProps, nodeSourceMapEnvironment } from './service-function'
import { STATE_PREFIX } from './storage'

/**
 * The failure handler's table rights: read a response and a session, give a run up (one
 * conditional UpdateItem) and release its session claim (one conditional PutItem). Nothing else.
 */
export const FAILED_RUNS_TABLE_ACTIONS = ['dynamodb:GetItem', 'dynamodb:UpdateItem', 'dynamodb:PutItem']
/** The one kind of object it may touch: a never-run job's stored request (core/abandoned-runs.ts jobKey), to delete it. */
export const JOB_OBJECTS = `${STATE_PREFIX}*/jobs/*`
/** Seconds a record takes at most (a few table calls). */
export const FAILED_RUNS_TIMEOUT = Duration.seconds(30)
/**
 * When a record comes back after a retry: a store error, or a run another delivery may still be
 * running (it is given up once that worker's lease, at most its 5 min timeout, has ended). Six
 * times the handler's timeout, as Lambda advises for an SQS event source.
 */
export const FAILED_RUNS_VISIBILITY_TIMEOUT = Duration.seconds(FAILED_RUNS_TIMEOUT.toSeconds() * 6)
/** Receives before a record goes to the dead-letter queue: 10 × 3 min, well past any worker's lease. */
export const FAILED_RUNS_MAX_RECEIVES = 10

export interface FailedRunsProps {
  readonly table: dynamodb.ITableV2
  readonly bucket: s3.IBucket
  readonly logRetention: logs.RetentionDays
  readonly sourceMaps: boolean
}

/**
 * Where the background worker's failed invocations go (its on-failure destination): an encrypted
 * standard SQS queue that keeps each invocation record (14 days), read by a small function
 * (functions/handlers/failed-runs.ts) that stores the run `failed` and releases its session.
 * A record it cannot handle after 10 receives moves to a dead-letter queue, with an alarm.
 *
 * The function's rights are its own log group, GetItem/UpdateItem/PutItem on the table,
 * DeleteObject on queued jobs' objects, and consuming this queue: no sandbox, no models, no
 * other object. Only the worker's role may send to the queue (Lambda sends the records with it).
 */
export class FailedRuns extends Construct {
  readonly queue: sqs.Queue
  readonly deadLetterQueue: sqs.Queue
  readonly function: nodejs.NodejsFunction
  readonly role: iam.Role
  readonly logGroup: logs.LogGroup
  readonly deadLetterAlarm: cloudwatch.Alarm

  constructor(scope: Construct, id: string, props: FailedRunsProps) {
    super(scope, id)

    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    })
    this.queue = new sqs.Queue(this, 'Queue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      visibilityTimeout: FAILED_RUNS_VISIBILITY_TIMEOUT,
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: FAILED_RUNS_MAX_RECEIVES },
    })

    this.logGroup = new logs.LogGroup(this, 'Logs', { retention: props.logRetention })
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: "Worker failure handler: own logs, its queue, the table's responses and sessions, queued jobs' objects",
    })
    this.function = new nodejs.NodejsFunction(this, 'Function', {
      ...nodeFunctionProps('functions/handlers/failed-runs.ts', { sourceMaps: props.sourceMaps }),
      description: "Stores a background run failed when its worker's invocation failed or its event expired",
      memorySize: 256,
      timeout: FAILED_RUNS_TIMEOUT,
      role: this.role,
      logGroup: this.logGroup,
      environment: {
        TABLE_NAME: props.table.tableName,
        BUCKET_NAME: props.bucket.bucketName,
        ...nodeSourceMapEnvironment(props.sourceMaps),
      },
    })
    acknowledgeNodeRuntime(this.function)
    this.function.addEventSource(new SqsEventSource(this.queue, { batchSize: 10, reportBatchItemFailures: true }))

    this.role.addToPolicy(ownLogGroupOnly(this.logGroup))
    this.role.addToPolicy(
      new iam.PolicyStatement({ sid: 'RunsAndSessions', actions: FAILED_RUNS_TABLE_ACTIONS, resources: [props.table.tableArn] }),
    )
    this.role.addToPolicy(
      new iam.PolicyStatement({ sid: 'DeleteQueuedJobs', actions: ['s3:DeleteObject'], resources: [props.bucket.arnForObjects(JOB_OBJECTS)] }),
    )
    Validations.of(this.role.node.findChild('DefaultPolicy')).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${logicalIdOf(props.bucket)}.Arn>/${JOB_OBJECTS}]`,
      reason:
        "A queued run's stored request lives at state/<org>/jobs/<response_id>.json, organization and response known only at run time; the grant is DeleteObject on those job objects of this one bucket only",
    })

    this.deadLetterAlarm = this.deadLetterQueue
      .metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: cloudwatch.Stats.MAXIMUM })
      .createAlarm(this, 'DeadLetterAlarm', {
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription:
          "A failed background run's record could not be handled after 10 tries: read it in the dead-letter queue (requestPayload names the response); readers still end the run failed once it is past its time",
      })
  }
}

function logicalIdOf(construct: Construct): string {
  return Stack.of(construct).getLogicalId(construct.node.defaultChild as CfnElement)
}
