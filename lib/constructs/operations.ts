import { Duration } from 'aws-cdk-lib'
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch'
import type * as lambda from 'aws-cdk-lib/aws-lambda'
import { Construct } from 'constructs'

export interface SandboxAlarmsProps {
  readonly sandbox: lambda.IFunction
  readonly timeout: Duration
}

/**
 * Alarms on the sandbox. A model's code that fails is a normal result, not a Lambda error, so
 * Errors means the runner itself broke. No actions: a team wires them to its own paging.
 */
export class SandboxAlarms extends Construct {
  readonly errors: cloudwatch.Alarm
  readonly throttles: cloudwatch.Alarm
  readonly nearTimeout: cloudwatch.Alarm

  constructor(scope: Construct, id: string, props: SandboxAlarmsProps) {
    super(scope, id)
    const period = Duration.minutes(5)
    const common = {
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }

    this.errors = props.sandbox.metricErrors({ period }).createAlarm(this, 'Errors', {
      ...common,
      threshold: 1,
      alarmDescription: 'The sandbox runner failed (not the user code): check its logs',
    })
    this.throttles = props.sandbox.metricThrottles({ period }).createAlarm(this, 'Throttles', {
      ...common,
      threshold: 1,
      alarmDescription:
        'Sandbox invocations were throttled: reserved concurrency or tenant-environment limit reached',
    })
    // 90% of the Lambda timeout: the runner's own kill did not end the block in time.
    this.nearTimeout = props.sandbox
      .metricDuration({ period, statistic: cloudwatch.Stats.MAXIMUM })
      .createAlarm(this, 'NearTimeout', {
        ...common,
        threshold: Math.floor(props.timeout.toMilliseconds() * 0.9),
        alarmDescription: 'A sandbox invocation ran close to the Lambda timeout',
      })
  }
}
