import { describe, expect, it } from 'vitest'
import { loadApiConfig } from '../../functions/config'
import { reservationSeconds } from '../../functions/core/abandoned-runs'
import {
  FAILED_RUNS_MAX_RECEIVES,
  FAILED_RUNS_TABLE_ACTIONS,
  FAILED_RUNS_TIMEOUT,
  FAILED_RUNS_VISIBILITY_TIMEOUT,
} from '../../lib/constructs/failed-runs'
import {
  WORKER_MAX_EVENT_AGE,
  WORKER_RESPONSE_DEADLINE_MS,
  WORKER_RETRY_ATTEMPTS,
  WORKER_TIMEOUT,
  WORKER_TIMEOUT_MARGIN_SECONDS,
} from '../../lib/constructs/worker'
import { buildStack, resourceByPrefix } from './support'

const { template } = buildStack()
const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: any }>
const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type)
const workerFn = resourceByPrefix(template, 'AWS::Lambda::Function', 'WorkerFunction')
const apiFn = resourceByPrefix(template, 'AWS::Lambda::Function', 'ApiFunction')
const roleOf = (fn: { resource: { Properties: any } }) => fn.resource.Properties.Role['Fn::GetAtt'][0] as string
const statementsOf = (roleId: string) =>
  ofType('AWS::IAM::Policy')
    .filter(([, p]) => JSON.stringify(p.Properties.Roles).includes(`"${roleId}"`))
    .flatMap(([, p]) => p.Properties.PolicyDocument.Statement as any[])

describe('background worker', () => {
  it('exists with the worker handler, Node 22 on arm64, outside the VPC', () => {
    expect(workerFn.resource.Properties).toMatchObject({
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      MemorySize: apiFn.resource.Properties.MemorySize,
    })
    expect(workerFn.resource.Properties.VpcConfig).toBeUndefined()
    expect(workerFn.resource.Properties.Description).toMatch(/background/)
    // Its own bundle (functions/handlers/worker.ts), not the API's.
    expect(workerFn.resource.Properties.Code.S3Key).not.toEqual(apiFn.resource.Properties.Code.S3Key)
  })

  it('has a timeout of the response deadline plus a margin, within Lambda\'s 15 minutes', () => {
    expect(WORKER_TIMEOUT.toSeconds()).toBe(WORKER_RESPONSE_DEADLINE_MS / 1000 + WORKER_TIMEOUT_MARGIN_SECONDS)
    expect(WORKER_TIMEOUT.toSeconds()).toBeLessThanOrEqual(900)
    expect(workerFn.resource.Properties.Timeout).toBe(WORKER_TIMEOUT.toSeconds())
    expect(workerFn.resource.Properties.Environment.Variables.RESPONSE_DEADLINE_MS).toBe(String(WORKER_RESPONSE_DEADLINE_MS))
  })

  it('has the API function\'s environment (plus its deadline), and no worker to invoke', () => {
    const { RESPONSE_DEADLINE_MS, ...worker } = workerFn.resource.Properties.Environment.Variables
    const { WORKER_FUNCTION_NAME, ...api } = apiFn.resource.Properties.Environment.Variables
    expect(RESPONSE_DEADLINE_MS).toBeDefined()
    expect(WORKER_FUNCTION_NAME).toEqual({ Ref: workerFn.logicalId })
    expect(worker).toEqual(api)
  })

  it('has the API function\'s rights except invoking the worker (itself) and staged uploads (only the API completes them), plus sending to its failure queue', () => {
    const withoutLogs = (list: any[]) => list.filter((s) => s.Sid !== 'OwnLogGroupOnly')
    const worker = withoutLogs(statementsOf(roleOf(workerFn)))
    const api = withoutLogs(statementsOf(roleOf(apiFn)))
    expect(worker.filter((s) => s.Sid !== 'FailedInvocationRecords')).toEqual(api.filter((s) => s.Sid !== 'InvokeWorker' && s.Sid !== 'StagedUploads'))
    expect(JSON.stringify(worker)).not.toContain('uploads/')
    expect(JSON.stringify(worker)).not.toContain(workerFn.logicalId)
    const logs = statementsOf(roleOf(workerFn)).find((s) => s.Sid === 'OwnLogGroupOnly')
    expect(logs.Resource).toEqual({ 'Fn::GetAtt': [workerFn.resource.Properties.LoggingConfig.LogGroup.Ref, 'Arn'] })
    expect(resources[roleOf(workerFn)]!.Properties.ManagedPolicyArns).toBeUndefined()
  })

  it('is never retried by Lambda: a background run must not run twice', () => {
    expect(WORKER_RETRY_ATTEMPTS).toBe(0)
    const configs = ofType('AWS::Lambda::EventInvokeConfig').filter(([, c]) => c.Properties.FunctionName.Ref === workerFn.logicalId)
    expect(configs).toHaveLength(1)
    expect(configs[0]![1].Properties).toMatchObject({ MaximumRetryAttempts: 0, Qualifier: '$LATEST' })
  })

  it('may be invoked by the API only (no resource policy opening it to anyone else)', () => {
    const permissions = ofType('AWS::Lambda::Permission').filter(([, p]) => JSON.stringify(p.Properties.FunctionName).includes(workerFn.logicalId))
    expect(permissions).toEqual([])
    const invokers = ofType('AWS::IAM::Policy').filter(([, p]) => JSON.stringify(p.Properties.PolicyDocument).includes(`"${workerFn.logicalId}"`))
    expect(invokers.map(([, p]) => p.Properties.Roles)).toEqual([[{ Ref: roleOf(apiFn) }]])
  })
})

describe('background worker failures', () => {
  const invokeConfig = () => ofType('AWS::Lambda::EventInvokeConfig').find(([, c]) => c.Properties.FunctionName.Ref === workerFn.logicalId)![1]
  const queue = resourceByPrefix(template, 'AWS::SQS::Queue', 'WorkerFailedRunsQueue')
  const deadLetters = resourceByPrefix(template, 'AWS::SQS::Queue', 'WorkerFailedRunsDeadLetterQueue')
  const failedFn = resourceByPrefix(template, 'AWS::Lambda::Function', 'WorkerFailedRunsFunction')
  const queueArn = { 'Fn::GetAtt': [queue.logicalId, 'Arn'] }

  it('keeps an event no longer than the session reservation the API made for the run (not Lambda\'s 6 hours)', () => {
    const age = invokeConfig().Properties.MaximumEventAgeInSeconds
    expect(age).toBe(WORKER_MAX_EVENT_AGE.toSeconds())
    // AWS allows 60 s to 6 hours; without it, 6 hours.
    expect(age).toBeGreaterThanOrEqual(60)
    expect(age).toBeLessThan(21_600)
    // The run starts while its session is reserved for it (core/responses.ts claims it for the
    // deadline plus a minute), or never; readers then take an untaken run as never started.
    expect(age).toBeLessThanOrEqual(reservationSeconds(WORKER_RESPONSE_DEADLINE_MS))
    expect(age).toBeGreaterThanOrEqual(WORKER_RESPONSE_DEADLINE_MS / 1000)
    // The API, which reserves the session and judges a run stale, has the worker's deadline.
    expect(apiFn.resource.Properties.Environment.Variables.RESPONSE_DEADLINE_MS).toBeUndefined()
    expect(loadApiConfig({ SANDBOX_FUNCTION_NAME: 's', TABLE_NAME: 't', BUCKET_NAME: 'b' }).responseDeadlineMs).toBe(WORKER_RESPONSE_DEADLINE_MS)
  })

  it('sends failed invocations and dropped events to an encrypted standard SQS queue (on-failure destination)', () => {
    expect(invokeConfig().Properties.DestinationConfig).toEqual({ OnFailure: { Destination: queueArn } })
    expect(queue.resource.Properties.FifoQueue).toBeUndefined() // destinations take standard queues only
    expect(queue.resource.Properties).toMatchObject({
      SqsManagedSseEnabled: true,
      MessageRetentionPeriod: 14 * 86_400,
      VisibilityTimeout: FAILED_RUNS_VISIBILITY_TIMEOUT.toSeconds(),
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [deadLetters.logicalId, 'Arn'] }, maxReceiveCount: FAILED_RUNS_MAX_RECEIVES },
    })
    expect(FAILED_RUNS_VISIBILITY_TIMEOUT.toSeconds()).toBeGreaterThanOrEqual(6 * FAILED_RUNS_TIMEOUT.toSeconds())
    // Retried until well past any worker's lease (its timeout) before it is dead-lettered.
    expect(FAILED_RUNS_MAX_RECEIVES * FAILED_RUNS_VISIBILITY_TIMEOUT.toSeconds()).toBeGreaterThan(3 * WORKER_TIMEOUT.toSeconds())
    expect(deadLetters.resource.Properties).toMatchObject({ SqsManagedSseEnabled: true, MessageRetentionPeriod: 14 * 86_400 })
    for (const q of [queue, deadLetters]) {
      const policies = ofType('AWS::SQS::QueuePolicy').filter(([, p]) => p.Properties.Queues[0].Ref === q.logicalId)
      // Only the TLS-only deny: no resource policy lets anyone else send or read.
      expect(policies.flatMap(([, p]) => p.Properties.PolicyDocument.Statement)).toEqual([
        expect.objectContaining({ Effect: 'Deny', Action: 'sqs:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
      ])
    }
    const alarm = ofType('AWS::CloudWatch::Alarm').find(([id]) => id.startsWith('WorkerFailedRunsDeadLetterAlarm'))![1]
    expect(alarm.Properties).toMatchObject({ MetricName: 'ApproximateNumberOfMessagesVisible', Threshold: 1 })
    expect(alarm.Properties.Dimensions[0].Value).toEqual({ 'Fn::GetAtt': [deadLetters.logicalId, 'QueueName'] })
  })

  it('lets the worker\'s role send to that queue (sqs:SendMessage only), and no other role', () => {
    const send = statementsOf(roleOf(workerFn)).filter((s) => JSON.stringify(s.Resource).includes(queue.logicalId))
    expect(send).toEqual([{ Sid: 'FailedInvocationRecords', Effect: 'Allow', Action: 'sqs:SendMessage', Resource: queueArn }])
    const senders = ofType('AWS::IAM::Policy').filter(([, p]) =>
      (p.Properties.PolicyDocument.Statement as any[]).some((s) => [s.Action].flat().includes('sqs:SendMessage') && JSON.stringify(s.Resource).includes(queue.logicalId)),
    )
    expect(senders.map(([, p]) => p.Properties.Roles)).toEqual([[{ Ref: roleOf(workerFn) }]])
  })

  it('reads the queue with its own small function (functions/handlers/failed-runs.ts), batch item failures on', () => {
    expect(failedFn.resource.Properties).toMatchObject({ Runtime: 'nodejs22.x', Architectures: ['arm64'], Handler: 'index.handler', Timeout: FAILED_RUNS_TIMEOUT.toSeconds() })
    expect(failedFn.resource.Properties.VpcConfig).toBeUndefined()
    expect(failedFn.resource.Properties.Code.S3Key).not.toEqual(workerFn.resource.Properties.Code.S3Key)
    expect(failedFn.resource.Properties.Code.S3Key).not.toEqual(apiFn.resource.Properties.Code.S3Key)
    const api = apiFn.resource.Properties.Environment.Variables
    expect(failedFn.resource.Properties.Environment.Variables).toEqual({ TABLE_NAME: api.TABLE_NAME, BUCKET_NAME: api.BUCKET_NAME })
    const mappings = ofType('AWS::Lambda::EventSourceMapping').filter(([, m]) => JSON.stringify(m.Properties.EventSourceArn).includes(queue.logicalId))
    expect(mappings.map(([, m]) => m.Properties)).toEqual([
      { BatchSize: 10, EventSourceArn: queueArn, FunctionName: { Ref: failedFn.logicalId }, FunctionResponseTypes: ['ReportBatchItemFailures'] },
    ])
  })

  it('gives that function only its logs, its queue, three table actions and deleting queued jobs\' objects', () => {
    const role = roleOf(failedFn)
    expect(resources[role]!.Properties.ManagedPolicyArns).toBeUndefined()
    const api = apiFn.resource.Properties.Environment.Variables
    expect(statementsOf(role)).toEqual([
      {
        Effect: 'Allow',
        Action: ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:ReceiveMessage'],
        Resource: queueArn,
      },
      {
        Sid: 'OwnLogGroupOnly',
        Effect: 'Allow',
        Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        Resource: { 'Fn::GetAtt': [failedFn.resource.Properties.LoggingConfig.LogGroup.Ref, 'Arn'] },
      },
      { Sid: 'RunsAndSessions', Effect: 'Allow', Action: [...FAILED_RUNS_TABLE_ACTIONS].sort(), Resource: { 'Fn::GetAtt': [api.TABLE_NAME.Ref, 'Arn'] } },
      {
        Sid: 'DeleteQueuedJobs',
        Effect: 'Allow',
        Action: 's3:DeleteObject',
        Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [api.BUCKET_NAME.Ref, 'Arn'] }, '/state/*/jobs/*']] },
      },
    ])
    // Nobody invokes it but its event source mapping (no resource policy).
    expect(ofType('AWS::Lambda::Permission').filter(([, p]) => JSON.stringify(p.Properties.FunctionName).includes(failedFn.logicalId))).toEqual([])
  })
})
