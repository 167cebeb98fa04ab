import { readFileSync } from 'node:fs'
import { Validations } from 'aws-cdk-lib'
import { AwsSolutionsChecks } from 'cdk-nag'
import { describe, expect, it } from 'vitest'
import { parseInterpreterConfig, scheduleConfigSchema, scheduleExpressionProblem } from '../../lib/config'
import { projectPath } from '../../lib/paths'
import { RUN_MAX_EVENT_AGE, RUN_RETRY_ATTEMPTS } from '../../lib/constructs/schedules'
import { buildStack, cdkJsonContext, resourceByPrefix } from './support'

const SCHEDULES = [
  {
    name: 'daily-report',
    schedule: 'cron(0 7 ? * MON-FRI *)',
    timezone: 'Europe/Berlin',
    organizationId: 'org_acme',
    assistantId: 'asst_report',
    inputs: [{ role: 'user', content: 'Summarize yesterday.' }],
    tools: [{ type: 'code_interpreter', mode: 'on' }],
    retryAttempts: 5,
    maxEventAgeSeconds: 900,
  },
  {
    name: 'hourly_check',
    schedule: 'rate(1 hour)',
    organizationId: 'org_beta',
    assistantId: 'asst_check',
    inputs: [{ role: 'user', content: 'Anything odd?' }],
  },
]

const { app, stack, template } = buildStack({ interpreter: { schedules: SCHEDULES } })
const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: any }>
const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type)
const scheduleFn = resourceByPrefix(template, 'AWS::Lambda::Function', 'SchedulesRunnerFunction')
const dlq = resourceByPrefix(template, 'AWS::SQS::Queue', 'SchedulesDeadLetterQueue')
const group = resourceByPrefix(template, 'AWS::Scheduler::ScheduleGroup', 'SchedulesGroup')
const scheduleResources = ofType('AWS::Scheduler::Schedule').map(([, r]) => r as { Properties: any; DependsOn?: string[] })
const schedules = scheduleResources.map((r) => r.Properties)
const byName = (name: string) => schedules.find((s) => s.Name === name)!
const schedulerRoleId = byName('daily-report').Target.RoleArn['Fn::GetAtt'][0] as string
const policiesOf = (roleId: string) =>
  ofType('AWS::IAM::Policy').filter(([, p]) => JSON.stringify(p.Properties.Roles).includes(`"${roleId}"`))

describe('scheduled analyses', () => {
  it('has one schedule per config entry, in one group, with the expected expression', () => {
    expect(schedules).toHaveLength(SCHEDULES.length)
    expect(byName('daily-report')).toMatchObject({
      ScheduleExpression: 'cron(0 7 ? * MON-FRI *)',
      ScheduleExpressionTimezone: 'Europe/Berlin',
      State: 'ENABLED',
      FlexibleTimeWindow: { Mode: 'OFF' },
    })
    expect(byName('hourly_check').ScheduleExpression).toBe('rate(1 hour)')
    for (const r of scheduleResources) {
      expect(r.Properties.GroupName).toBe(group.resource.Properties.Name)
      // The group is named, not referenced, so the order must be explicit.
      expect(r.DependsOn).toContain(group.logicalId)
    }
  })

  it('sends the stored request, named by the schedule, to the schedule function', () => {
    const target = byName('daily-report').Target
    expect(target.Arn).toEqual({ 'Fn::GetAtt': [scheduleFn.logicalId, 'Arn'] })
    expect(JSON.parse(target.Input)).toEqual({
      schedule: 'daily-report',
      organization_id: 'org_acme',
      assistant_id: 'asst_report',
      inputs: [{ role: 'user', content: 'Summarize yesterday.' }],
      tools: [{ type: 'code_interpreter', mode: 'on' }],
    })
    // No tools in the config: none in the request (the assistant's own apply).
    expect(JSON.parse(byName('hourly_check').Target.Input)).toEqual({
      schedule: 'hourly_check',
      organization_id: 'org_beta',
      assistant_id: 'asst_check',
      inputs: [{ role: 'user', content: 'Anything odd?' }],
    })
  })

  it('retries delivery as configured (defaults otherwise) and dead-letters to the shared queue', () => {
    const dead = { Arn: { 'Fn::GetAtt': [dlq.logicalId, 'Arn'] } }
    expect(byName('daily-report').Target).toMatchObject({
      RetryPolicy: { MaximumRetryAttempts: 5, MaximumEventAgeInSeconds: 900 },
      DeadLetterConfig: dead,
    })
    expect(byName('hourly_check').Target).toMatchObject({
      RetryPolicy: { MaximumRetryAttempts: 3, MaximumEventAgeInSeconds: 3600 },
      DeadLetterConfig: dead,
    })
  })

  it('retries a failed run with Lambda (asynchronous invocation) and dead-letters it to the same queue', () => {
    expect(scheduleFn.resource.Properties.DeadLetterConfig).toEqual({ TargetArn: { 'Fn::GetAtt': [dlq.logicalId, 'Arn'] } })
    const invokeConfigs = ofType('AWS::Lambda::EventInvokeConfig').filter(
      ([, c]) => c.Properties.FunctionName.Ref === scheduleFn.logicalId,
    )
    expect(invokeConfigs).toHaveLength(1)
    expect(invokeConfigs[0]![1].Properties).toMatchObject({
      FunctionName: { Ref: scheduleFn.logicalId },
      MaximumRetryAttempts: RUN_RETRY_ATTEMPTS,
      MaximumEventAgeInSeconds: RUN_MAX_EVENT_AGE.toSeconds(),
    })
  })

  it("the scheduler role may only invoke the schedule function (and dead-letter undeliverable events)", () => {
    const role = resources[schedulerRoleId]!
    expect(role.Properties.ManagedPolicyArns).toBeUndefined()
    expect(role.Properties.AssumeRolePolicyDocument.Statement).toEqual([
      {
        Action: 'sts:AssumeRole',
        Effect: 'Allow',
        Principal: { Service: 'scheduler.amazonaws.com' },
        Condition: {
          StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' }, 'aws:SourceArn': { 'Fn::GetAtt': [group.logicalId, 'Arn'] } },
        },
      },
    ])
    const policies = policiesOf(schedulerRoleId)
    expect(policies).toHaveLength(1)
    const statements = policies[0]![1].Properties.PolicyDocument.Statement
    expect(statements).toEqual([
      {
        Sid: 'InvokeScheduleFunction',
        Effect: 'Allow',
        Action: 'lambda:InvokeFunction',
        Resource: { 'Fn::GetAtt': [scheduleFn.logicalId, 'Arn'] },
      },
      {
        Sid: 'DeadLetterUndelivered',
        Effect: 'Allow',
        Action: 'sqs:SendMessage',
        Resource: { 'Fn::GetAtt': [dlq.logicalId, 'Arn'] },
      },
    ])
    // The only Lambda right anywhere on the role: no version or alias wildcard, no other function.
    const lambdaStatements = statements.filter((s: any) => String(s.Action).startsWith('lambda:'))
    expect(lambdaStatements).toHaveLength(1)
  })

  it('gives the schedule function the API function\'s environment and rights (but not the worker, nor staged uploads), plus its dead-letter queue', () => {
    const apiFn = resourceByPrefix(template, 'AWS::Lambda::Function', 'ApiFunction')
    const { WORKER_FUNCTION_NAME, ...apiVariables } = apiFn.resource.Properties.Environment.Variables
    expect(WORKER_FUNCTION_NAME).toBeDefined()
    expect(scheduleFn.resource.Properties).toMatchObject({
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Timeout: apiFn.resource.Properties.Timeout,
    })
    expect(scheduleFn.resource.Properties.Environment).toEqual({ Variables: apiVariables })
    expect(scheduleFn.resource.Properties.VpcConfig).toBeUndefined()
    const fnRole = scheduleFn.resource.Properties.Role['Fn::GetAtt'][0] as string
    const apiRole = apiFn.resource.Properties.Role['Fn::GetAtt'][0] as string
    const statements = (roleId: string) => policiesOf(roleId).flatMap(([, p]) => p.Properties.PolicyDocument.Statement)
    const withoutLogs = (list: any[]) => list.filter((s) => s.Sid !== 'OwnLogGroupOnly')
    const scheduleStatements = withoutLogs(statements(fnRole))
    const deadLetter = scheduleStatements.filter((s) => s.Sid === undefined)
    expect(deadLetter).toEqual([{ Effect: 'Allow', Action: 'sqs:SendMessage', Resource: { 'Fn::GetAtt': [dlq.logicalId, 'Arn'] } }])
    // Staged client uploads are the API's alone (docs/deploy.md, Bucket layout).
    const apiStatements = withoutLogs(statements(apiRole)).filter((s) => s.Sid !== 'InvokeWorker' && s.Sid !== 'StagedUploads')
    expect(scheduleStatements.filter((s) => s.Sid !== undefined)).toEqual(apiStatements)
  })

  it('encrypts the dead-letter queue, refuses plain HTTP to it, and alarms on its depth', () => {
    expect(dlq.resource.Properties).toMatchObject({ SqsManagedSseEnabled: true, MessageRetentionPeriod: 14 * 24 * 3600 })
    const [[, queuePolicy]] = ofType('AWS::SQS::QueuePolicy')
    expect(queuePolicy!.Properties.PolicyDocument.Statement).toContainEqual(
      expect.objectContaining({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
    )
    const alarm = resourceByPrefix(template, 'AWS::CloudWatch::Alarm', 'SchedulesDeadLetterAlarm')
    expect(alarm.resource.Properties).toMatchObject({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [dlq.logicalId, 'QueueName'] } }],
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    })
  })

  it('is cdk-nag clean with schedules present', () => {
    const violations = new AwsSolutionsChecks(app).validateScope(app).violations
    expect(violations.map((v) => `${v.ruleName} at ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)).toEqual([])
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app))
    expect(() => app.synth()).not.toThrow()
    expect(stack.node.tryFindChild('Schedules')).toBeDefined()
  })

  it('creates nothing for schedules when the config lists none (the committed cdk.json)', () => {
    expect((cdkJsonContext().interpreter as { schedules?: unknown[] }).schedules ?? []).toEqual([])
    const plain = buildStack().template.toJSON().Resources as Record<string, { Type: string }>
    const types = Object.values(plain).map((r) => r.Type)
    expect(types).not.toContain('AWS::Scheduler::Schedule')
    expect(types).not.toContain('AWS::Scheduler::ScheduleGroup')
    // The only queues are the background worker's failure queue and its dead-letter queue.
    const queues = Object.entries(plain).filter(([, r]) => r.Type === 'AWS::SQS::Queue').map(([id]) => id)
    expect(queues.filter((id) => !id.startsWith('WorkerFailedRuns'))).toEqual([])
  })
})

describe('schedule config', () => {
  const base = { bedrockModelIds: ['anthropic.claude-3-5-haiku-20241022-v1:0'] }
  const entry = SCHEDULES[1]!
  const parse = (schedules: unknown) => () => parseInterpreterConfig({ ...base, schedules })

  it('fills the documented defaults', () => {
    const [s] = parseInterpreterConfig({ ...base, schedules: [entry] }).schedules
    expect(s).toMatchObject({ enabled: true, retryAttempts: 3, maxEventAgeSeconds: 3600 })
    expect(parseInterpreterConfig(base).schedules).toEqual([])
  })

  it('names the field of a bad schedule', () => {
    expect(parse([{ ...entry, name: 'has space' }])).toThrow(/interpreter\.schedules\.0\.name: letters, digits, _ and -/)
    expect(parse([{ ...entry, schedule: 'cron(0 7 * * *)' }])).toThrow(/interpreter\.schedules\.0\.schedule: cron\(\.\.\.\) has 6 fields .* got 5/)
    expect(parse([{ ...entry, schedule: 'every day' }])).toThrow(/interpreter\.schedules\.0\.schedule: must be cron\(/)
    expect(parse([{ ...entry, timezone: 'Mars/Olympus' }])).toThrow(/interpreter\.schedules\.0\.timezone: not an IANA time zone/)
    expect(parse([{ ...entry, organizationId: 'acme' }])).toThrow(/interpreter\.schedules\.0\.organizationId: must look like org_/)
    expect(parse([{ ...entry, assistantId: 'a1' }])).toThrow(/interpreter\.schedules\.0\.assistantId: must look like asst_/)
    expect(parse([{ ...entry, inputs: [{ role: 'assistant', content: 'hi' }] }])).toThrow(/interpreter\.schedules\.0\.inputs: the last input must come from the user/)
    expect(parse([{ ...entry, tools: [{ type: 'shell' }] }])).toThrow(/interpreter\.schedules\.0\.tools\.0\.type: unknown tool type/)
    expect(parse([{ ...entry, retryAttempts: 500 }])).toThrow(/interpreter\.schedules\.0\.retryAttempts:/)
    expect(parse([{ ...entry, maxEventAgeSeconds: 10 }])).toThrow(/interpreter\.schedules\.0\.maxEventAgeSeconds:/)
    expect(parse([{ ...entry, fileIds: ['file_1'] }])).toThrow(/interpreter\.schedules\.0\.fileIds: not supported yet/)
    expect(parse([{ ...entry, organisationId: 'org_x' }])).toThrow(/interpreter\.schedules\.0: Unrecognized key: "organisationId"/)
  })

  it('rejects a duplicate name, naming the second entry', () => {
    expect(parse([entry, { ...entry, schedule: 'rate(5 minutes)' }])).toThrow(/interpreter\.schedules\.1\.name: duplicate schedule name "hourly_check"/)
  })

  it('checks the expression syntax Scheduler accepts', () => {
    for (const ok of ['rate(1 minute)', 'rate(15 minutes)', 'rate(1 day)', 'cron(0 12 * * ? *)', 'cron(15 10 ? * 6L 2026-2030)', 'cron(0/5 8-17 ? * MON-FRI *)', 'cron(0 9 1W * ? *)', 'cron(0 9 ? * 2#1 *)']) {
      expect(scheduleExpressionProblem(ok), ok).toBeUndefined()
    }
    expect(scheduleExpressionProblem('rate(0 minutes)')).toMatch(/whole positive value/)
    expect(scheduleExpressionProblem('rate(1 minutes)')).toMatch(/singular unit with 1/)
    expect(scheduleExpressionProblem('rate(5 hour)')).toMatch(/plural unit/)
    expect(scheduleExpressionProblem('rate(5 weeks)')).toMatch(/minute\(s\), hour\(s\) or day\(s\)/)
    expect(scheduleExpressionProblem('cron(0 12 * * * *)')).toMatch(/exactly one of day-of-month/)
    expect(scheduleExpressionProblem('cron(0 12 ? * ? *)')).toMatch(/exactly one of day-of-month/)
    expect(scheduleExpressionProblem('cron(0 12 * * ? * *)')).toMatch(/got 7/)
    expect(scheduleExpressionProblem('cron(0 $ * * ? *)')).toMatch(/field 2 \(hours\)/)
    expect(scheduleExpressionProblem('at(2026-01-01T00:00:00)')).toMatch(/must be cron/)
  })
})

describe('docs/deploy.md', () => {
  const doc = readFileSync(projectPath('docs/deploy.md'), 'utf8')

  it('has an example schedule that the config accepts', () => {
    const example = /An example entry[\s\S]*?```json\n([\s\S]*?)```/.exec(doc)?.[1]
    expect(example).toBeDefined()
    const [s] = parseInterpreterConfig({ bedrockModelIds: ['anthropic.claude-3-5-haiku-20241022-v1:0'], schedules: [JSON.parse(example!)] }).schedules
    expect(s!.name).toBe('nightly-interest')
  })

  it('documents every config key', () => {
    const config = parseInterpreterConfig({ bedrockModelIds: ['anthropic.claude-3-5-haiku-20241022-v1:0'] })
    const keys = Object.entries(config).flatMap(([key, value]) =>
      value && typeof value === 'object' && !Array.isArray(value) ? Object.keys(value).map((k) => `${key}.${k}`) : [key],
    )
    for (const key of [...keys, ...Object.keys(scheduleConfigSchema.shape)]) expect(doc, key).toContain(`| \`${key}\` |`)
  })
})
