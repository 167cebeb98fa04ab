import { Match } from 'aws-cdk-lib/assertions'
import { describe, expect, it } from 'vitest'
import { SANDBOX_ENI_ACTIONS, SANDBOX_LOG_ACTIONS } from '../../lib/constructs/sandbox'
import { buildStack, resourceByPrefix } from './support'

const { template, config } = buildStack()
const sandbox = resourceByPrefix(template, 'AWS::Lambda::Function', 'SandboxFunction')

describe('sandbox function', () => {
  it('is an arm64 image running the sandbox handler', () => {
    expect(sandbox.resource.Properties).toMatchObject({
      PackageType: 'Image',
      Architectures: ['arm64'],
      ImageConfig: { Command: ['sandbox.runner.handler'] },
    })
  })

  it('times out after the code limit, with a margin', () => {
    const timeoutSeconds = sandbox.resource.Properties.Timeout
    expect(timeoutSeconds * 1000).toBeGreaterThan(config.sandbox.codeTimeoutMs)
    expect(timeoutSeconds * 1000).toBeLessThanOrEqual(config.sandbox.codeTimeoutMs + 15_000)
  })

  it('takes memory, storage and concurrency from the config', () => {
    expect(sandbox.resource.Properties).toMatchObject({
      MemorySize: config.sandbox.memoryMb,
      EphemeralStorage: { Size: config.sandbox.ephemeralStorageMb },
    })
    // null (the default) reserves nothing; deploy-time.test.ts checks both settings.
    expect(sandbox.resource.Properties.ReservedConcurrentExecutions).toBe(config.sandbox.reservedConcurrency ?? undefined)
  })

  it('uses tenant isolation per organization', () => {
    expect(sandbox.resource.Properties.TenancyConfig).toEqual({ TenantIsolationMode: 'PER_TENANT' })
  })

  it('leaves tenant isolation out when the config turns it off', () => {
    const off = buildStack({ interpreter: { sandbox: { tenantIsolation: false } } })
    const fn = resourceByPrefix(off.template, 'AWS::Lambda::Function', 'SandboxFunction')
    expect(fn.resource.Properties.TenancyConfig).toBeUndefined()
  })

  it('reserves no concurrency when the config says null (accounts with a low quota)', () => {
    const none = buildStack({ interpreter: { sandbox: { reservedConcurrency: null } } })
    const fn = resourceByPrefix(none.template, 'AWS::Lambda::Function', 'SandboxFunction')
    expect(fn.resource.Properties.ReservedConcurrentExecutions).toBeUndefined()
  })

  it('writes to a log group with retention', () => {
    const logGroup = sandbox.resource.Properties.LoggingConfig.LogGroup.Ref
    expect(template.toJSON().Resources[logGroup].Properties.RetentionInDays).toBe(config.logRetentionDays)
  })
})

describe('sandbox role', () => {
  const roleRef = sandbox.resource.Properties.Role['Fn::GetAtt'][0]
  const role = template.toJSON().Resources[roleRef]
  const policies = Object.values(template.findResources('AWS::IAM::Policy')).filter((p) =>
    JSON.stringify(p.Properties.Roles).includes(roleRef),
  )

  it('has no managed policies and exactly one inline policy', () => {
    expect(role.Properties.ManagedPolicyArns).toBeUndefined()
    expect(role.Properties.Policies).toBeUndefined()
    expect(policies).toHaveLength(1)
  })

  it('allows only logs on its own group and the ENI rights, and denies those from inside', () => {
    const logGroup = sandbox.resource.Properties.LoggingConfig.LogGroup.Ref
    const statements = policies[0]!.Properties.PolicyDocument.Statement
    expect(statements).toEqual([
      {
        Sid: 'OwnLogGroupOnly',
        Effect: 'Allow',
        Action: [...SANDBOX_LOG_ACTIONS].sort(),
        Resource: { 'Fn::GetAtt': [logGroup, 'Arn'] },
      },
      { Sid: 'LambdaManagesVpcInterfaces', Effect: 'Allow', Action: [...SANDBOX_ENI_ACTIONS].sort(), Resource: '*' },
      {
        Sid: 'NoEniCallsFromInsideTheSandbox',
        Effect: 'Deny',
        Action: [...SANDBOX_ENI_ACTIONS].sort(),
        Resource: '*',
        Condition: { Null: { 'lambda:SourceFunctionArn': 'false' } },
      },
    ])
    // The ENI list is Lambda's documented set, nothing more.
    expect([...SANDBOX_ENI_ACTIONS].sort()).toEqual([
      'ec2:AssignPrivateIpAddresses',
      'ec2:CreateNetworkInterface',
      'ec2:DeleteNetworkInterface',
      'ec2:DescribeNetworkInterfaces',
      'ec2:DescribeSubnets',
      'ec2:UnassignPrivateIpAddresses',
    ])
  })
})

describe('sandbox role and S3', () => {
  const roleRef = sandbox.resource.Properties.Role['Fn::GetAtt'][0]

  it('has no S3 rights at all: the runner uses presigned URLs, which carry the signing function\'s rights', () => {
    const statements = Object.values(template.findResources('AWS::IAM::Policy'))
      .filter((p) => JSON.stringify(p.Properties.Roles).includes(roleRef))
      .flatMap((p) => p.Properties.PolicyDocument.Statement as { Action: string | string[] }[])
    expect(statements.length).toBeGreaterThan(0)
    for (const st of statements) for (const action of [st.Action].flat()) expect(action).not.toMatch(/^s3:|^\*$/)
    // No bucket policy names it either.
    for (const p of Object.values(template.findResources('AWS::S3::BucketPolicy'))) {
      expect(JSON.stringify(p.Properties.PolicyDocument)).not.toContain(roleRef)
    }
  })
})

describe('sandbox alarms', () => {
  it('alarms on errors, throttles and durations near the timeout', () => {
    const fnRef = { Name: 'FunctionName', Value: { Ref: sandbox.logicalId } }
    for (const metric of ['Errors', 'Throttles']) {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        MetricName: metric,
        Namespace: 'AWS/Lambda',
        Dimensions: [fnRef],
        Threshold: 1,
      })
    }
    const timeoutMs = sandbox.resource.Properties.Timeout * 1000
    const [duration] = Object.values(
      template.findResources('AWS::CloudWatch::Alarm', { Properties: { MetricName: 'Duration' } }),
    )
    expect(duration!.Properties).toMatchObject({ Statistic: 'Maximum', Dimensions: [fnRef] })
    expect(duration!.Properties.Threshold).toBeLessThan(timeoutMs)
    expect(duration!.Properties.Threshold).toBeGreaterThan(config.sandbox.codeTimeoutMs)
  })

  it('leaves nothing else attached to the sandbox', () => {
    // (The one event source mapping in the stack feeds the worker's failure handler its queue.)
    template.allResourcesProperties('AWS::Lambda::EventSourceMapping', { FunctionName: Match.not({ Ref: sandbox.logicalId }) })
    template.resourceCountIs('AWS::Lambda::Url', 0)
    template.allResourcesProperties('AWS::Lambda::Permission', {
      FunctionName: Match.not({ 'Fn::GetAtt': [sandbox.logicalId, 'Arn'] }),
    })
  })
})

describe('sandbox runtime settings', () => {
  it('passes the code timeout, the block memory budget and the tenant binding to the runner', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      PackageType: 'Image',
      Environment: {
        Variables: {
          CODE_TIMEOUT_MS: String(config.sandbox.codeTimeoutMs),
          SANDBOX_MEMORY_MB: String(config.sandbox.memoryMb - 384 - Math.min(256, Math.floor(config.sandbox.memoryMb / 8))),
          SANDBOX_STATE_CACHE_MB: String(Math.min(256, Math.floor(config.sandbox.memoryMb / 8))),
          SANDBOX_SINGLE_TENANT: '1',
        },
      },
    })
  })
})
