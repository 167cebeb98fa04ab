import { Match } from 'aws-cdk-lib/assertions'
import { describe, expect, it } from 'vitest'
import { SANDBOX_ENI_ACTIONS, SANDBOX_LOG_ACTIONS } from '../../lib/constructs/sandbox'
import { buildStack, resourceByPrefix } from './support'

const { template, config } = buildStack()
const sandbox = resourceByPrefix(template, 'AWS::Lambda::Function', 'SandboxFunction')
const sandboxSg = resourceByPrefix(template, 'AWS::EC2::SecurityGroup', 'NetworkSandboxSecurityGroup')

describe('sandbox network', () => {
  it('has only isolated subnets', () => {
    const subnets = Object.values(template.findResources('AWS::EC2::Subnet'))
    expect(subnets.length).toBeGreaterThan(0)
    for (const subnet of subnets) {
      expect(subnet.Properties.Tags).toContainEqual({ Key: 'aws-cdk:subnet-type', Value: 'Isolated' })
      expect(subnet.Properties.MapPublicIpOnLaunch).toBe(false)
    }
    expect(sandbox.resource.Properties.VpcConfig.SubnetIds).toHaveLength(subnets.length)
  })

  it('has no route out: no NAT, internet gateway, egress-only gateway, endpoint or route', () => {
    for (const type of [
      'AWS::EC2::NatGateway',
      'AWS::EC2::InternetGateway',
      'AWS::EC2::EgressOnlyInternetGateway',
      'AWS::EC2::VPCGatewayAttachment',
      'AWS::EC2::VPCEndpoint',
      'AWS::EC2::TransitGatewayAttachment',
      'AWS::EC2::VPCPeeringConnection',
      'AWS::EC2::Route',
      'AWS::EC2::EIP',
    ]) {
      template.resourceCountIs(type, 0)
    }
  })

  it('turns DNS off, so query names cannot carry data out', () => {
    template.resourceCountIs('AWS::EC2::VPC', 1)
    template.hasResourceProperties('AWS::EC2::VPC', {
      EnableDnsSupport: false,
      EnableDnsHostnames: false,
    })
  })

  it("gives the sandbox's security group no egress and no ingress", () => {
    // CDK's placeholder for "no egress": an ICMP rule to 255.255.255.255/32 that matches nothing.
    expect(sandboxSg.resource.Properties.SecurityGroupEgress).toEqual([
      {
        CidrIp: '255.255.255.255/32',
        Description: 'Disallow all traffic',
        FromPort: 252,
        IpProtocol: 'icmp',
        ToPort: 86,
      },
    ])
    expect(sandboxSg.resource.Properties.SecurityGroupIngress).toBeUndefined()
    template.resourceCountIs('AWS::EC2::SecurityGroupEgress', 0)
    template.resourceCountIs('AWS::EC2::SecurityGroupIngress', 0)
    expect(sandbox.resource.Properties.VpcConfig.SecurityGroupIds).toEqual([
      { 'Fn::GetAtt': [sandboxSg.logicalId, 'GroupId'] },
    ])
  })

  it('records flow logs of all traffic', () => {
    template.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'ALL', ResourceType: 'VPC' })
  })
})

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
      ReservedConcurrentExecutions: config.sandbox.reservedConcurrency,
    })
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
    template.resourceCountIs('AWS::Lambda::EventSourceMapping', 0)
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
        Variables: { CODE_TIMEOUT_MS: String(config.sandbox.codeTimeoutMs), SANDBOX_MEMORY_MB: String(config.sandbox.memoryMb - 384), SANDBOX_SINGLE_TENANT: '1' },
      },
    })
  })
})
