import { Aws, Duration, TimeZone } from 'aws-cdk-lib'
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch'
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb'
import * as iam from 'aws-cdk-lib/aws-iam'
import type * as lambda from 'aws-cdk-lib/aws-lambda'
import type * as logs from 'aws-cdk-lib/aws-logs'
import type * as s3 from 'aws-cdk-lib/aws-s3'
import * as scheduler from 'aws-cdk-lib/aws-scheduler'
import * as targets from 'aws-cdk-lib/aws-scheduler-targets'
import * as sqs from 'aws-cdk-lib/aws-sqs'
import { Construct } from 'constructs'
import { type InterpreterConfig, scheduleEvent } from '../config'
import { ServiceFunction } from './service-function'

/**
 * Lambda's own retries of a failed run. Scheduler invokes the function asynchronously, so its
 * retry policy covers delivery (throttling, a missing function) and these cover a run that threw.
 */
export const RUN_RETRY_ATTEMPTS = 2
export const RUN_MAX_EVENT_AGE = Duration.hours(1)

export interface SchedulesProps {
  readonly config: InterpreterConfig
  readonly sandbox: lambda.IFunction
  readonly table: dynamodb.ITableV2
  readonly bucket: s3.IBucket
  readonly logRetention: logs.RetentionDays
}

/**
 * Scheduled analyses: one EventBridge Scheduler schedule per `schedules` entry in cdk.json, all in
 * one schedule group, each invoking the schedule function with its stored request. The function
 * runs it through the same run loop as POST /v1/responses and stores the response with the
 * schedule's name. Events that cannot be delivered, and runs that still fail after Lambda's
 * retries, land in one encrypted dead-letter queue with an alarm on its depth.
 */
export class Schedules extends Construct {
  readonly runner: ServiceFunction
  readonly deadLetterQueue: sqs.Queue
  readonly group: scheduler.ScheduleGroup
  readonly role: iam.Role
  readonly schedules: scheduler.Schedule[]
  readonly deadLetterAlarm: cloudwatch.Alarm
  readonly errorsAlarm: cloudwatch.Alarm

  constructor(scope: Construct, id: string, props: SchedulesProps) {
    super(scope, id)

    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    })

    this.runner = new ServiceFunction(this, 'Runner', {
      ...props,
      entry: 'functions/handlers/schedule.ts',
      description: 'Runs one scheduled analysis and stores its response',
      roleDescription: 'Schedule Lambda: own logs, the sandbox, its table and bucket, configured models, its dead-letter queue',
      functionProps: {
        retryAttempts: RUN_RETRY_ATTEMPTS,
        maxEventAge: RUN_MAX_EVENT_AGE,
        deadLetterQueue: this.deadLetterQueue,
      },
    })

    this.group = new scheduler.ScheduleGroup(this, 'Group', {})

    // A hand-made role instead of the one LambdaInvoke would create: that one is also granted
    // `<function arn>:*` (every version and alias); this one may invoke the unqualified function only.
    this.role = new iam.Role(this, 'SchedulerRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        conditions: {
          StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID, 'aws:SourceArn': this.group.scheduleGroupArn },
        },
      }),
      description: 'EventBridge Scheduler: invoke the schedule function, dead-letter undeliverable events',
    })
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'InvokeScheduleFunction',
        actions: ['lambda:InvokeFunction'],
        resources: [this.runner.function.functionArn],
      }),
    )
    // Scheduler writes undeliverable events to the dead-letter queue with this role.
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'DeadLetterUndelivered',
        actions: ['sqs:SendMessage'],
        resources: [this.deadLetterQueue.queueArn],
      }),
    )
    // The targets must not add grants of their own to it.
    const targetRole = this.role.withoutPolicyUpdates()

    this.schedules = props.config.schedules.map((s) => {
      const schedule = new scheduler.Schedule(this, `Schedule-${s.name}`, {
          scheduleName: s.name,
          scheduleGroup: this.group,
          description: s.description ?? `Scheduled analysis ${s.name} (${s.organizationId}, ${s.assistantId})`,
          enabled: s.enabled,
          schedule: scheduler.ScheduleExpression.expression(s.schedule, s.timezone ? TimeZone.of(s.timezone) : undefined),
          timeWindow: scheduler.TimeWindow.off(),
          target: new targets.LambdaInvoke(this.runner.function, {
            role: targetRole,
            input: scheduler.ScheduleTargetInput.fromObject(scheduleEvent(s)),
            retryAttempts: s.retryAttempts,
            maxEventAge: Duration.seconds(s.maxEventAgeSeconds),
            deadLetterQueue: this.deadLetterQueue,
          }),
        })
      // The schedule names its group by a literal name, not a reference: without this,
      // CloudFormation may create the schedule before the group exists.
      schedule.node.addDependency(this.group)
      return schedule
    })

    const period = Duration.minutes(5)
    this.deadLetterAlarm = this.deadLetterQueue
      .metricApproximateNumberOfMessagesVisible({ period, statistic: cloudwatch.Stats.MAXIMUM })
      .createAlarm(this, 'DeadLetterAlarm', {
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription:
          'A scheduled analysis was not delivered or still failed after its retries: read the message (schedule name, error) in the dead-letter queue',
      })
    this.errorsAlarm = this.runner.function.metricErrors({ period }).createAlarm(this, 'RunErrors', {
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      alarmDescription: 'A scheduled analysis failed (Lambda retries it); its failed response is stored and listed by schedule',
    })
  }
}
