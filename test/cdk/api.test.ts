import { Match } from 'aws-cdk-lib/assertions'
import { describe, expect, it } from 'vitest'
import { MODEL_ACTIONS, OBJECT_ACTIONS, TABLE_ACTIONS } from '../../lib/constructs/api-function'
import { BINARY_MEDIA_TYPES } from '../../lib/constructs/rest-api'
import { buildStack, resourceByPrefix } from './support'

const { template, config } = buildStack({
  // One plain model id and one inference profile, so both ARN shapes are checked.
  interpreter: {
    bedrockModelIds: ['anthropic.claude-3-5-haiku-20241022-v1:0', 'eu.anthropic.claude-sonnet-4-5-20250929-v1:0'],
  },
})
const resources = template.toJSON().Resources
const apiFn = resourceByPrefix(template, 'AWS::Lambda::Function', 'ApiFunction')
const sandboxFn = resourceByPrefix(template, 'AWS::Lambda::Function', 'SandboxFunction')
const workerFn = resourceByPrefix(template, 'AWS::Lambda::Function', 'WorkerFunction')
const table = resourceByPrefix(template, 'AWS::DynamoDB::GlobalTable', 'StorageTable')
const bucket = resourceByPrefix(template, 'AWS::S3::Bucket', 'StorageBucket')
const roleRef = apiFn.resource.Properties.Role['Fn::GetAtt'][0]

const arn = (suffix: string) => ({
  'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ...suffix.split('|').map((p) => (p.startsWith('Ref:') ? { Ref: p.slice(4) } : p))]],
})

/** Same elements in any order (CDK sorts a statement's resources). */
const sameSet = (actual: unknown[], expected: unknown[]) =>
  JSON.stringify(actual.map((x) => JSON.stringify(x)).sort()) ===
  JSON.stringify(expected.map((x) => JSON.stringify(x)).sort())

describe('API function', () => {
  it('runs Node 22 on arm64, outside the VPC', () => {
    expect(apiFn.resource.Properties).toMatchObject({
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      Timeout: config.api.timeoutSeconds,
    })
    expect(apiFn.resource.Properties.VpcConfig).toBeUndefined()
  })

  it('gets the names it needs from the environment', () => {
    expect(apiFn.resource.Properties.Environment.Variables).toMatchObject({
      SANDBOX_FUNCTION_NAME: { Ref: sandboxFn.logicalId },
      TABLE_NAME: { Ref: table.logicalId },
      BUCKET_NAME: { Ref: bucket.logicalId },
      CODE_TIMEOUT_MS: String(config.sandbox.codeTimeoutMs),
      SANDBOX_TENANT_ISOLATION: 'true',
      WORKER_FUNCTION_NAME: { Ref: workerFn.logicalId },
      FILE_MAX_BYTES: '536870912',
    })
    expect(config.files.maxFileBytes).toBe(536_870_912)
  })

  it('takes FILE_MAX_BYTES from files.maxFileBytes', () => {
    const small = buildStack({ interpreter: { files: { maxFileBytes: 2 * 1024 ** 2 } } })
    const fn = resourceByPrefix(small.template, 'AWS::Lambda::Function', 'ApiFunction')
    expect(fn.resource.Properties.Environment.Variables.FILE_MAX_BYTES).toBe('2097152')
  })
})

describe('API role', () => {
  const role = resources[roleRef]
  const policies = Object.values(template.findResources('AWS::IAM::Policy')).filter((p) =>
    JSON.stringify(p.Properties.Roles).includes(roleRef),
  )
  const logGroup = apiFn.resource.Properties.LoggingConfig.LogGroup.Ref

  it('has no managed policies and one inline policy', () => {
    expect(role.Properties.ManagedPolicyArns).toBeUndefined()
    expect(policies).toHaveLength(1)
  })

  it('has exactly these actions on exactly these resources', () => {
    const sorted = (a: string[]) => [...a].sort()
    expect(policies[0]!.Properties.PolicyDocument.Statement).toEqual([
      {
        Sid: 'OwnLogGroupOnly',
        Effect: 'Allow',
        Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        Resource: { 'Fn::GetAtt': [logGroup, 'Arn'] },
      },
      {
        Sid: 'InvokeSandbox',
        Effect: 'Allow',
        Action: 'lambda:InvokeFunction',
        Resource: { 'Fn::GetAtt': [sandboxFn.logicalId, 'Arn'] },
      },
      { Sid: 'OwnTable', Effect: 'Allow', Action: sorted(TABLE_ACTIONS), Resource: { 'Fn::GetAtt': [table.logicalId, 'Arn'] } },
      {
        Sid: 'OwnBucketFilesAndState',
        Effect: 'Allow',
        Action: ['s3:DeleteObject', 's3:GetObject', 's3:PutObject'],
        Resource: [
          { 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucket.logicalId, 'Arn'] }, '/files/*']] },
          { 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucket.logicalId, 'Arn'] }, '/state/*']] },
        ],
      },
      {
        Sid: 'ConfiguredModels',
        Effect: 'Allow',
        Action: sorted(MODEL_ACTIONS),
        Resource: expect.toSatisfy((r: unknown[]) =>
          sameSet(r, [
            arn(':bedrock:|Ref:AWS::Region|::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0'),
            arn(':bedrock:|Ref:AWS::Region|:|Ref:AWS::AccountId|:inference-profile/eu.anthropic.claude-sonnet-4-5-20250929-v1:0'),
            arn(':bedrock:*::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0'),
          ]),
        ),
      },
      {
        Sid: 'InvokeWorker',
        Effect: 'Allow',
        Action: 'lambda:InvokeFunction',
        Resource: { 'Fn::GetAtt': [workerFn.logicalId, 'Arn'] },
      },
      {
        Sid: 'StagedUploads',
        Effect: 'Allow',
        Action: ['s3:DeleteObject', 's3:GetObject', 's3:PutObject'],
        Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucket.logicalId, 'Arn'] }, '/uploads/*']] },
      },
    ])
    expect(sorted(OBJECT_ACTIONS)).toEqual(['s3:DeleteObject', 's3:GetObject', 's3:PutObject'])
    expect(TABLE_ACTIONS).not.toContain('dynamodb:Scan')
  })

  it('may invoke exactly the sandbox and the worker (unqualified ARNs, no version or alias wildcard)', () => {
    const statements = policies[0]!.Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[]
    const lambdaStatements = statements.filter((st) => [st.Action].flat().some((a) => a.startsWith('lambda:')))
    expect(lambdaStatements.map((st) => st.Action)).toEqual(['lambda:InvokeFunction', 'lambda:InvokeFunction'])
    expect(lambdaStatements.map((st) => st.Resource)).toEqual([
      { 'Fn::GetAtt': [sandboxFn.logicalId, 'Arn'] },
      { 'Fn::GetAtt': [workerFn.logicalId, 'Arn'] },
    ])
    expect(JSON.stringify(lambdaStatements)).not.toContain(':*')
  })

  it('grants a global inference profile its Region-less model ARN too', () => {
    const global = buildStack({ interpreter: { bedrockModelIds: ['global.anthropic.claude-sonnet-4-5-20250929-v1:0'] } })
    global.template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Sid: 'ConfiguredModels',
            Resource: Match.arrayWith([
              arn(':bedrock:|Ref:AWS::Region|:|Ref:AWS::AccountId|:inference-profile/global.anthropic.claude-sonnet-4-5-20250929-v1:0'),
              arn(':bedrock:*::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0'),
              arn(':bedrock:::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0'),
            ]),
          }),
        ]),
      },
    })
  })

  it('has no wildcard action and no bare "*" resource', () => {
    const text = JSON.stringify(policies[0]!.Properties.PolicyDocument)
    expect(text).not.toMatch(/"Action":"[^"]*\*"/)
    expect(text).not.toMatch(/"Resource":"\*"/)
  })

  it('may touch only files/*, state/* and uploads/* of its bucket: no ListBucket, no other prefix, no other bucket', () => {
    const text = JSON.stringify(policies[0]!.Properties.PolicyDocument)
    expect(text).not.toContain('s3:ListBucket')
    const s3Resources = (policies[0]!.Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[])
      .filter((st) => [st.Action].flat().some((a) => a.startsWith('s3:')))
      .flatMap((st) => [st.Resource].flat())
    expect(s3Resources.map((r: any) => r['Fn::Join'][1][1])).toEqual(['/files/*', '/state/*', '/uploads/*'])
  })
})

describe('REST API', () => {
  const methods = template.findResources('AWS::ApiGateway::Method')
  const methodAt = (path: string, verb: string) => {
    const entry = Object.entries(methods).find(
      ([id, m]) => m.Properties.HttpMethod === verb && id.startsWith(`RestApi${path.replace(/[^A-Za-z0-9]/g, '')}${verb}`),
    )
    if (!entry) throw new Error(`no ${verb} ${path}`)
    return entry[1].Properties
  }

  it('serves the documented routes', () => {
    const routes = Object.keys(methods).map((id) => id.replace(/[0-9A-F]{8}$/, '')).sort()
    expect(routes).toEqual(
      ['RestApiv1executionsPOST', 'RestApiv1healthGET', 'RestApiv1proxyANY', 'RestApiv1responsesGET', 'RestApiv1responsesPOST', 'RestApiv1responsesidGET'].sort(),
    )
  })

  it('streams POST /v1/responses through response-streaming-invocations', () => {
    expect(methodAt('v1responses', 'POST').Integration).toMatchObject({
      Type: 'AWS_PROXY',
      ResponseTransferMode: 'STREAM',
      TimeoutInMillis: config.api.timeoutSeconds * 1000,
    })
    template.hasResourceProperties('AWS::ApiGateway::Method', {
      HttpMethod: 'POST',
      Integration: {
        ResponseTransferMode: 'STREAM',
        Uri: { 'Fn::Join': ['', Match.arrayWith([{ 'Fn::GetAtt': [apiFn.logicalId, 'Arn'] }, '/response-streaming-invocations'])] },
      },
    })
  })

  it('uses the one streaming integration on every route, since the function has one handler', () => {
    for (const method of Object.values(methods)) {
      expect(method.Properties.Integration.ResponseTransferMode).toBe('STREAM')
    }
  })

  it('leaves only GET /v1/health open; every other route goes through the authorizer', () => {
    for (const [id, method] of Object.entries(methods)) {
      // Authorizer and usage plans in detail: usage-plans.test.ts.
      expect(method.Properties.AuthorizationType, id).toBe(id.startsWith('RestApiv1healthGET') ? 'NONE' : 'CUSTOM')
    }
  })

  it('throttles the stage from the config and writes access logs', () => {
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      MethodSettings: Match.arrayWith([
        Match.objectLike({
          HttpMethod: '*',
          ResourcePath: '/*',
          ThrottlingRateLimit: config.throttling.rateLimit,
          ThrottlingBurstLimit: config.throttling.burstLimit,
        }),
      ]),
      AccessLogSetting: { DestinationArn: Match.anyValue(), Format: Match.stringLikeRegexp('requestId') },
    })
  })

  it('validates JSON bodies on the POST routes', () => {
    template.hasResourceProperties('AWS::ApiGateway::RequestValidator', {
      ValidateRequestBody: true,
      ValidateRequestParameters: true,
    })
    for (const path of ['v1executions', 'v1responses']) {
      const post = methodAt(path, 'POST')
      expect(post.RequestValidatorId).toBeDefined()
      expect(post.RequestModels['application/json']).toBeDefined()
    }
  })

  it('is Regional and outputs its URL', () => {
    template.hasResourceProperties('AWS::ApiGateway::RestApi', { EndpointConfiguration: { Types: ['REGIONAL'] } })
    const outputs = template.findOutputs('*')
    expect(outputs.ApiUrl).toBeDefined()
  })

  it('passes multipart and octet-stream bodies to the function base64-encoded', () => {
    expect(BINARY_MEDIA_TYPES).toEqual(['multipart/form-data', 'application/octet-stream'])
    template.hasResourceProperties('AWS::ApiGateway::RestApi', { BinaryMediaTypes: ['multipart/form-data', 'application/octet-stream'] })
  })

  it('serves the file and session routes through /v1/{proxy+}, authorized, streamed and without body validation', () => {
    const apiResources = template.findResources('AWS::ApiGateway::Resource')
    const parentOf = (r: any) => r.Properties.ParentId.Ref ?? 'root'
    /** The method API Gateway picks: an explicit path part, then a {param}, then a greedy {proxy+}. */
    const resolve = (verb: string, path: string) => {
      let current = 'root'
      for (const part of path.split('/').filter(Boolean)) {
        const children = Object.entries(apiResources).filter(([, r]) => parentOf(r) === current)
        const next =
          children.find(([, r]) => r.Properties.PathPart === part) ??
          children.find(([, r]) => /^\{[^+]+\}$/.test(r.Properties.PathPart)) ??
          children.find(([, r]) => /^\{.+\+\}$/.test(r.Properties.PathPart))
        if (!next) throw new Error(`no resource for ${path} at ${part}`)
        current = next[0]
        if (next[1].Properties.PathPart.endsWith('+}')) break
      }
      const found = Object.entries(methods).find(
        ([, m]) => m.Properties.ResourceId.Ref === current && [verb, 'ANY'].includes(m.Properties.HttpMethod),
      )
      if (!found) throw new Error(`no method for ${verb} ${path}`)
      return found
    }
    const routes = [
      ['GET', '/v1/files'],
      ['POST', '/v1/files'],
      ['GET', '/v1/files/file_abc'],
      ['DELETE', '/v1/files/file_abc'],
      ['GET', '/v1/files/file_abc/content'],
      ['POST', '/v1/files/uploads'],
      ['POST', '/v1/files/uploads/file_abc/complete'],
      ['POST', '/v1/sessions'],
      ['GET', '/v1/sessions/sess_abc'],
      ['DELETE', '/v1/sessions/sess_abc'],
    ]
    for (const [verb, path] of routes) {
      const [id, method] = resolve(verb!, path!)
      expect(id, `${verb} ${path}`).toMatch(/^RestApiv1proxyANY/)
      expect(method.Properties).toMatchObject({ AuthorizationType: 'CUSTOM', Integration: { ResponseTransferMode: 'STREAM' } })
      // No validator or model: a multipart or binary body must not be rejected before the function.
      expect(method.Properties.RequestValidatorId).toBeUndefined()
      expect(method.Properties.RequestModels).toBeUndefined()
    }
    // The resolver itself: explicit routes still win over the proxy.
    expect(resolve('GET', '/v1/responses/resp_1')[0]).toMatch(/^RestApiv1responsesidGET/)
  })
})
