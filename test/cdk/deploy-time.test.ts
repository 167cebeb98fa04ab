// Issue 12, "deploy-time failures removed": settings a fresh account refuses or that cost at
// every cold start, each checked with its default and with the other setting.
import { describe, expect, it } from 'vitest'
import { DEFAULT_API_MEMORY_MB } from '../../lib/config'
import { nodeFunctionProps, SOURCE_MAP_NODE_OPTIONS } from '../../lib/constructs/service-function'
import { buildStack, resourceByPrefix } from './support'

type Resources = Record<string, { Type: string; Properties: Record<string, any>; DependsOn?: string[]; DeletionPolicy?: string }>

const schedules = [
  { name: 'n', schedule: 'rate(1 day)', organizationId: 'org_a', assistantId: 'asst_a', inputs: [{ role: 'user', content: 'hi' }] },
]
// The schema's defaults for the keys under test, whatever cdk.json sets (undefined = omitted).
const defaults = buildStack({
  interpreter: {
    sandbox: { reservedConcurrency: undefined },
    api: { memoryMb: undefined, cloudWatchRole: undefined, sourceMaps: undefined },
    schedules,
  },
})
const custom = buildStack({
  interpreter: {
    sandbox: { reservedConcurrency: 7 },
    api: { memoryMb: 1024, cloudWatchRole: false, sourceMaps: true },
    schedules,
  },
})

const resourcesOf = (built: ReturnType<typeof buildStack>) => built.template.toJSON().Resources as Resources
const ofType = (built: ReturnType<typeof buildStack>, type: string) => Object.entries(resourcesOf(built)).filter(([, r]) => r.Type === type)
/** The Node functions of the service: API, worker, schedule runner, authorizer. */
const NODE_FUNCTIONS = ['ApiFunction', 'WorkerFunction', 'SchedulesRunnerFunction', 'RestApiUsagePlansAuthorizerFunction']
const fn = (built: ReturnType<typeof buildStack>, prefix: string) =>
  resourceByPrefix(built.template, 'AWS::Lambda::Function', prefix).resource.Properties

describe('API Gateway CloudWatch Logs role (api.cloudWatchRole)', () => {
  const apigatewayRoles = (built: ReturnType<typeof buildStack>) =>
    ofType(built, 'AWS::IAM::Role').filter(([, r]) =>
      JSON.stringify(r.Properties.AssumeRolePolicyDocument).includes('apigateway.amazonaws.com'),
    )

  it('by default sets the account role before the stage that logs through it', () => {
    expect(defaults.config.api.cloudWatchRole).toBe(true)
    const accounts = ofType(defaults, 'AWS::ApiGateway::Account')
    expect(accounts).toHaveLength(1)
    const [accountId, account] = accounts[0]!
    const roles = apigatewayRoles(defaults)
    expect(roles).toHaveLength(1)
    const [roleId, role] = roles[0]!
    expect(account.Properties).toEqual({ CloudWatchRoleArn: { 'Fn::GetAtt': [roleId, 'Arn'] } })
    expect(role.Properties.AssumeRolePolicyDocument.Statement).toEqual([
      { Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'apigateway.amazonaws.com' } },
    ])
    expect(role.Properties.ManagedPolicyArns).toEqual([
      { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs']] },
    ])
    // A per-account, per-Region setting other APIs may rely on: deleting the stack leaves it.
    expect([account.DeletionPolicy, role.DeletionPolicy]).toEqual(['Retain', 'Retain'])
    // The stage turns logging on, so it must be created after the account has its role.
    const stage = resourceByPrefix(defaults.template, 'AWS::ApiGateway::Stage', 'RestApiDeploymentStage')
    expect(stage.resource.Properties.AccessLogSetting).toBeDefined()
    expect(resourcesOf(defaults)[stage.logicalId]!.DependsOn).toContain(accountId)
  })

  it('creates neither the account setting nor the role when set to false', () => {
    expect(ofType(custom, 'AWS::ApiGateway::Account')).toEqual([])
    expect(apigatewayRoles(custom)).toEqual([])
    const stage = resourceByPrefix(custom.template, 'AWS::ApiGateway::Stage', 'RestApiDeploymentStage')
    expect(resourcesOf(custom)[stage.logicalId]!.DependsOn ?? []).toEqual([])
    // Logging stays on: it then uses the role the account already has.
    expect(stage.resource.Properties.AccessLogSetting).toBeDefined()
  })
})

describe('reserved concurrency (sandbox.reservedConcurrency)', () => {
  it('reserves nothing by default, for no function of the stack', () => {
    expect(defaults.config.sandbox.reservedConcurrency).toBeNull()
    const functions = ofType(defaults, 'AWS::Lambda::Function')
    expect(functions.map(([id]) => id)).toEqual(expect.arrayContaining([expect.stringMatching(/^SandboxFunction/)]))
    for (const [id, f] of functions) expect(f.Properties.ReservedConcurrentExecutions, id).toBeUndefined()
  })

  it('reserves the configured number for the sandbox only', () => {
    expect(fn(custom, 'SandboxFunction').ReservedConcurrentExecutions).toBe(7)
    const reserved = ofType(custom, 'AWS::Lambda::Function').filter(([, f]) => f.Properties.ReservedConcurrentExecutions !== undefined)
    expect(reserved.map(([id]) => id)).toEqual([expect.stringMatching(/^SandboxFunction/)])
  })
})

describe('source maps (api.sourceMaps)', () => {
  it('are off by default: no map in the bundle, no NODE_OPTIONS on any Node function', () => {
    expect(defaults.config.api.sourceMaps).toBe(false)
    expect(nodeFunctionProps('functions/handlers/api.ts', { sourceMaps: false }).bundling.sourceMap).toBe(false)
    for (const prefix of NODE_FUNCTIONS) {
      expect(fn(defaults, prefix).Environment.Variables.NODE_OPTIONS, prefix).toBeUndefined()
    }
  })

  it('when on, put a map in every bundle and turn on Node\'s source-map support', () => {
    expect(nodeFunctionProps('functions/handlers/api.ts', { sourceMaps: true }).bundling.sourceMap).toBe(true)
    for (const prefix of NODE_FUNCTIONS) {
      expect(fn(custom, prefix).Environment.Variables.NODE_OPTIONS, prefix).toBe(SOURCE_MAP_NODE_OPTIONS)
    }
    expect(SOURCE_MAP_NODE_OPTIONS).toBe('--enable-source-maps')
    // The bundling options reach the asset: its hash follows them (bundle contents: bundling.test.ts).
    for (const prefix of NODE_FUNCTIONS) {
      expect(fn(custom, prefix).Code.S3Key, prefix).not.toEqual(fn(defaults, prefix).Code.S3Key)
    }
  })
})

describe('API memory (api.memoryMb)', () => {
  it('defaults to 512 MB for the API, worker and schedule functions, and follows the config', () => {
    expect(DEFAULT_API_MEMORY_MB).toBe(512)
    for (const prefix of ['ApiFunction', 'WorkerFunction', 'SchedulesRunnerFunction']) {
      expect(fn(defaults, prefix).MemorySize, prefix).toBe(512)
      expect(fn(custom, prefix).MemorySize, prefix).toBe(1024)
    }
  })
})
