import { describe, expect, it } from 'vitest'
import {
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

  it('has the API function\'s rights except invoking the worker (itself)', () => {
    const withoutLogs = (list: any[]) => list.filter((s) => s.Sid !== 'OwnLogGroupOnly')
    const worker = withoutLogs(statementsOf(roleOf(workerFn)))
    const api = withoutLogs(statementsOf(roleOf(apiFn)))
    expect(worker).toEqual(api.filter((s) => s.Sid !== 'InvokeWorker'))
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
