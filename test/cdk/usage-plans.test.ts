import { describe, expect, it } from 'vitest'
import { DEFAULT_USAGE_PLANS, parseInterpreterConfig } from '../../lib/config'
import { AUTHORIZER_TABLE_ACTIONS } from '../../lib/constructs/usage-plans'
import { buildStack, resourceByPrefix } from './support'

const { template, config } = buildStack()
const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: Record<string, any> }>
const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type)
const restApi = resourceByPrefix(template, 'AWS::ApiGateway::RestApi', 'RestApi')
const stage = resourceByPrefix(template, 'AWS::ApiGateway::Stage', 'RestApiDeploymentStage')
const authorizerFn = resourceByPrefix(template, 'AWS::Lambda::Function', 'RestApiUsagePlansAuthorizerFunction')
const authorizer = resourceByPrefix(template, 'AWS::ApiGateway::Authorizer', 'RestApiUsagePlansAuthorizer')
const table = resourceByPrefix(template, 'AWS::DynamoDB::GlobalTable', 'StorageTable')
const plans = Object.entries(config.plans)

describe('usage plans per organization plan', () => {
  it('uses cdk.json plans, which default to free, standard and enterprise', () => {
    expect(Object.keys(config.plans).sort()).toEqual(['enterprise', 'free', 'standard'])
    expect(config.plans).toEqual(DEFAULT_USAGE_PLANS)
  })

  it('creates one usage plan per configured plan with its throttle and daily quota, on the prod stage', () => {
    const usagePlans = ofType('AWS::ApiGateway::UsagePlan')
    expect(usagePlans).toHaveLength(plans.length)
    for (const [name, limits] of plans) {
      const [, plan] = usagePlans.find(([, p]) => p.Properties.UsagePlanName.endsWith(`-${name}`))!
      expect(plan.Properties).toMatchObject({
        Throttle: { RateLimit: limits.rateLimit, BurstLimit: limits.burstLimit },
        Quota: { Limit: limits.requestsPerDay, Period: 'DAY' },
        ApiStages: [{ ApiId: { Ref: restApi.logicalId }, Stage: { Ref: stage.logicalId } }],
      })
    }
  })

  it('follows the configured limits', () => {
    const custom = buildStack({
      interpreter: {
        plans: { ...DEFAULT_USAGE_PLANS, free: { rateLimit: 3, burstLimit: 4, requestsPerDay: 5 }, team: { rateLimit: 7, burstLimit: 8, requestsPerDay: 9 } },
      },
    })
    custom.template.resourceCountIs('AWS::ApiGateway::UsagePlan', 4)
    custom.template.resourceCountIs('AWS::ApiGateway::ApiKey', 4)
    custom.template.hasResourceProperties('AWS::ApiGateway::UsagePlan', {
      Throttle: { RateLimit: 7, BurstLimit: 8 },
      Quota: { Limit: 9, Period: 'DAY' },
    })
    custom.template.hasResourceProperties('AWS::ApiGateway::UsagePlan', { Throttle: { RateLimit: 3, BurstLimit: 4 }, Quota: { Limit: 5 } })
  })

  it('attaches one API key per plan to its usage plan and the stage; the authorizer gets their values', () => {
    const keys = ofType('AWS::ApiGateway::ApiKey')
    expect(keys).toHaveLength(plans.length)
    const usageKeys = JSON.parse(authorizerFn.resource.Properties.Environment.Variables.PLAN_USAGE_KEYS)
    expect(Object.keys(usageKeys).sort()).toEqual(plans.map(([n]) => n).sort())
    const planKeys = ofType('AWS::ApiGateway::UsagePlanKey')
    expect(planKeys).toHaveLength(plans.length)
    for (const [name] of plans) {
      const value: string = usageKeys[name]
      expect(value).toMatch(new RegExp(`^usage-${name}-[0-9a-f]{32}$`))
      const [keyId, key] = keys.find(([, k]) => k.Properties.Value === value)!
      expect(key.Properties).toMatchObject({ Enabled: true, StageKeys: [{ RestApiId: { Ref: restApi.logicalId }, StageName: { Ref: stage.logicalId } }] })
      const [planId] = ofType('AWS::ApiGateway::UsagePlan').find(([, p]) => p.Properties.UsagePlanName.endsWith(`-${name}`))!
      expect(planKeys.some(([, pk]) => pk.Properties.KeyId.Ref === keyId && pk.Properties.UsagePlanId.Ref === planId && pk.Properties.KeyType === 'API_KEY')).toBe(true)
    }
    // Deterministic: the same stack synthesizes the same values.
    const again = buildStack()
    const againFn = resourceByPrefix(again.template, 'AWS::Lambda::Function', 'RestApiUsagePlansAuthorizerFunction')
    expect(againFn.resource.Properties.Environment.Variables.PLAN_USAGE_KEYS).toBe(authorizerFn.resource.Properties.Environment.Variables.PLAN_USAGE_KEYS)
  })

  it('takes API keys from the authorizer, so clients send only their Bearer key', () => {
    expect(restApi.resource.Properties.ApiKeySourceType).toBe('AUTHORIZER')
  })

  it('puts every method but GET /v1/health behind the authorizer with apiKeyRequired', () => {
    const methods = ofType('AWS::ApiGateway::Method')
    expect(methods.length).toBeGreaterThan(1)
    for (const [id, method] of methods) {
      if (id.startsWith('RestApiv1healthGET')) {
        expect(method.Properties.AuthorizationType).toBe('NONE')
        expect(method.Properties.AuthorizerId).toBeUndefined()
        expect(method.Properties.ApiKeyRequired ?? false).toBe(false)
        continue
      }
      expect(method.Properties, id).toMatchObject({
        AuthorizationType: 'CUSTOM',
        AuthorizerId: { Ref: authorizer.logicalId },
        ApiKeyRequired: true,
      })
    }
  })

  it('is a REQUEST authorizer on the Authorization header, cached 60 s', () => {
    expect(authorizer.resource.Properties).toMatchObject({
      Type: 'REQUEST',
      IdentitySource: 'method.request.header.Authorization',
      AuthorizerResultTtlInSeconds: 60,
      RestApiId: { Ref: restApi.logicalId },
    })
    expect(JSON.stringify(authorizer.resource.Properties.AuthorizerUri)).toContain(authorizerFn.logicalId)
  })

  it('answers 401 and 429 in the API error shape', () => {
    for (const [type, status] of [['UNAUTHORIZED', '401'], ['QUOTA_EXCEEDED', '429'], ['THROTTLED', '429']]) {
      template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', { ResponseType: type, StatusCode: status })
    }
  })
})

describe('authorizer function', () => {
  const roleRef = authorizerFn.resource.Properties.Role['Fn::GetAtt'][0]
  const policies = Object.values(resources).filter(
    (r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles).includes(roleRef),
  )
  const logGroup = authorizerFn.resource.Properties.LoggingConfig.LogGroup.Ref

  it('runs the authorizer handler on Node 22 arm64 with its table and usage keys', () => {
    expect(authorizerFn.resource.Properties).toMatchObject({
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
    })
    expect(authorizerFn.resource.Properties.VpcConfig).toBeUndefined()
    expect(authorizerFn.resource.Properties.Environment.Variables).toMatchObject({
      TABLE_NAME: { Ref: table.logicalId },
      PLAN_USAGE_KEYS: expect.any(String),
    })
  })

  it('may only write its logs and GetItem on the table', () => {
    expect(resources[roleRef]!.Properties.ManagedPolicyArns).toBeUndefined()
    expect(policies).toHaveLength(1)
    expect(AUTHORIZER_TABLE_ACTIONS).toEqual(['dynamodb:GetItem'])
    expect(policies[0]!.Properties.PolicyDocument.Statement).toEqual([
      {
        Sid: 'OwnLogGroupOnly',
        Effect: 'Allow',
        Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        Resource: { 'Fn::GetAtt': [logGroup, 'Arn'] },
      },
      { Sid: 'ReadTable', Effect: 'Allow', Action: 'dynamodb:GetItem', Resource: { 'Fn::GetAtt': [table.logicalId, 'Arn'] } },
    ])
  })

  it('may be invoked by this API only', () => {
    const permissions = ofType('AWS::Lambda::Permission').filter(([, p]) => JSON.stringify(p.Properties.FunctionName).includes(authorizerFn.logicalId))
    expect(permissions).toHaveLength(1)
    expect(permissions[0]![1].Properties).toMatchObject({ Action: 'lambda:InvokeFunction', Principal: 'apigateway.amazonaws.com' })
    expect(JSON.stringify(permissions[0]![1].Properties.SourceArn)).toContain(restApi.logicalId)
  })
})

describe('plans config', () => {
  const base = { bedrockModelIds: ['anthropic.claude-3-5-haiku-20241022-v1:0'] }

  it('rejects a missing plan, a bad limit and an unknown field, naming the key', () => {
    const { free: _free, ...noFree } = DEFAULT_USAGE_PLANS
    expect(() => parseInterpreterConfig({ ...base, plans: noFree })).toThrow(/interpreter\.plans\.free: missing/)
    expect(() => parseInterpreterConfig({ ...base, plans: { ...DEFAULT_USAGE_PLANS, free: { rateLimit: 0, burstLimit: 1, requestsPerDay: 1 } } })).toThrow(
      /interpreter\.plans\.free\.rateLimit/,
    )
    expect(() =>
      parseInterpreterConfig({ ...base, plans: { ...DEFAULT_USAGE_PLANS, free: { rateLimit: 1, burstLimit: 1, requestsPerDay: 1, monthly: 5 } } }),
    ).toThrow(/interpreter\.plans\.free/)
    expect(() => parseInterpreterConfig({ ...base, plans: { ...DEFAULT_USAGE_PLANS, 'Bad Name': DEFAULT_USAGE_PLANS.free } })).toThrow(/interpreter\.plans/)
  })
})
