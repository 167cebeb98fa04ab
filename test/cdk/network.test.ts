import { describe, expect, it } from 'vitest'
import { ALLOW_RULE_PRIORITY, BLOCK_RULE_PRIORITY } from '../../lib/constructs/dns-firewall'
import { PREFIX_LIST_ID_PATH, PREFIX_LIST_LOOKUP_ACTIONS, SANDBOX_S3_ACTIONS } from '../../lib/constructs/sandbox-s3-access'
import { buildStack, resourceByPrefix } from './support'

const { template } = buildStack()
const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: any; DependsOn?: string[] }>
const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type)
const sandbox = resourceByPrefix(template, 'AWS::Lambda::Function', 'SandboxFunction')
const sandboxSg = resourceByPrefix(template, 'AWS::EC2::SecurityGroup', 'NetworkSandboxSecurityGroup')
const vpc = resourceByPrefix(template, 'AWS::EC2::VPC', 'NetworkVpc')
const bucket = resourceByPrefix(template, 'AWS::S3::Bucket', 'StorageBucket')
const roleOf = (prefix: string) => resourceByPrefix(template, 'AWS::Lambda::Function', prefix).resource.Properties.Role['Fn::GetAtt'][0] as string
const objects = (suffix: string) => ({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucket.logicalId, 'Arn'] }, suffix]] })
const regional = (prefix: string) => ({ 'Fn::Join': ['', [prefix, { Ref: 'AWS::Region' }, '.', { Ref: 'AWS::URLSuffix' }]] })

describe('sandbox VPC', () => {
  it('has only isolated subnets, all of them the sandbox function\'s', () => {
    const subnets = ofType('AWS::EC2::Subnet')
    expect(subnets.length).toBeGreaterThan(0)
    for (const [, subnet] of subnets) {
      expect(subnet.Properties.Tags).toContainEqual({ Key: 'aws-cdk:subnet-type', Value: 'Isolated' })
      expect(subnet.Properties.MapPublicIpOnLaunch).toBe(false)
    }
    expect(sandbox.resource.Properties.VpcConfig.SubnetIds).toEqual(subnets.map(([id]) => ({ Ref: id })))
  })

  it('has no way to the internet: no NAT, internet or egress-only gateway, peering, transit gateway or explicit route', () => {
    for (const type of [
      'AWS::EC2::NatGateway',
      'AWS::EC2::InternetGateway',
      'AWS::EC2::EgressOnlyInternetGateway',
      'AWS::EC2::VPCGatewayAttachment',
      'AWS::EC2::TransitGatewayAttachment',
      'AWS::EC2::VPCPeeringConnection',
      'AWS::EC2::Route',
      'AWS::EC2::EIP',
    ]) {
      template.resourceCountIs(type, 0)
    }
  })

  it('turns DNS support on (the runner resolves S3 names) and leaves DNS hostnames off', () => {
    template.resourceCountIs('AWS::EC2::VPC', 1)
    expect(vpc.resource.Properties).toMatchObject({ EnableDnsSupport: true, EnableDnsHostnames: false })
  })

  it('records flow logs of all traffic', () => {
    template.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'ALL', ResourceType: 'VPC', ResourceId: { Ref: vpc.logicalId } })
  })
})

describe('sandbox path to S3', () => {
  const endpoints = ofType('AWS::EC2::VPCEndpoint')

  it('is one S3 gateway endpoint on exactly the isolated subnets\' route tables, and no other endpoint', () => {
    expect(endpoints).toHaveLength(1)
    const [, endpoint] = endpoints[0]!
    const routeTables = ofType('AWS::EC2::SubnetRouteTableAssociation').map(([, a]) => a.Properties.RouteTableId)
    expect(routeTables).toHaveLength(ofType('AWS::EC2::Subnet').length)
    expect(endpoint.Properties).toMatchObject({
      VpcEndpointType: 'Gateway',
      ServiceName: { 'Fn::Join': ['', ['com.amazonaws.', { Ref: 'AWS::Region' }, '.s3']] },
      VpcId: { Ref: vpc.logicalId },
    })
    expect(endpoint.Properties.RouteTableIds).toEqual(routeTables)
  })

  it('has an endpoint policy allowing only GetObject/PutObject on files/* and state/* of this bucket, signed by the API or worker role', () => {
    const [, endpoint] = endpoints[0]!
    expect(SANDBOX_S3_ACTIONS).toEqual(['s3:GetObject', 's3:PutObject'])
    expect(endpoint.Properties.PolicyDocument).toEqual({
      Version: '2012-10-17',
      Statement: [
        {
          Sid: 'PresignedTransfersOfThisBucketOnly',
          Effect: 'Allow',
          Principal: { AWS: '*' },
          Action: ['s3:GetObject', 's3:PutObject'],
          Resource: [objects('/files/*'), objects('/state/*')],
          Condition: {
            ArnEquals: {
              'aws:PrincipalArn': [{ 'Fn::GetAtt': [roleOf('ApiFunction'), 'Arn'] }, { 'Fn::GetAtt': [roleOf('WorkerFunction'), 'Arn'] }],
            },
          },
        },
      ],
    })
    // The sandbox's own role is never a signer: its credentials are useless at the endpoint too.
    expect(JSON.stringify(endpoint.Properties.PolicyDocument)).not.toContain(roleOf('SandboxFunction'))
  })

  it('also accepts URLs signed by the schedule function when schedules exist', () => {
    const schedules = [
      { name: 'n', schedule: 'rate(1 day)', organizationId: 'org_a', assistantId: 'asst_a', inputs: [{ role: 'user', content: 'hi' }] },
    ]
    const withSchedules = buildStack({ interpreter: { schedules } }).template
    const runnerRole = resourceByPrefix(withSchedules, 'AWS::Lambda::Function', 'SchedulesRunnerFunction').resource.Properties.Role['Fn::GetAtt'][0]
    const [endpoint] = Object.values(withSchedules.findResources('AWS::EC2::VPCEndpoint'))
    const signers = endpoint!.Properties.PolicyDocument.Statement[0].Condition.ArnEquals['aws:PrincipalArn']
    expect(signers).toHaveLength(3)
    expect(signers).toContainEqual({ 'Fn::GetAtt': [runnerRole, 'Arn'] })
  })

  it("gives the sandbox's security group one egress rule, TCP 443 to the Region's S3 prefix list, and no ingress", () => {
    const lookup = resourceByPrefix(template, 'Custom::AWS', 'SandboxS3AccessS3PrefixList')
    expect(sandboxSg.resource.Properties.SecurityGroupEgress).toEqual([
      {
        DestinationPrefixListId: { 'Fn::GetAtt': [lookup.logicalId, PREFIX_LIST_ID_PATH] },
        Description: "HTTPS to S3 through the gateway endpoint (the Region's S3 prefix list), the only route out",
        FromPort: 443,
        IpProtocol: 'tcp',
        ToPort: 443,
      },
    ])
    // No address range at all (0.0.0.0/0 included), and no rule outside the group: inline, the
    // group is created with this rule and never with EC2's default allow-all egress.
    expect(JSON.stringify(sandboxSg.resource.Properties)).not.toMatch(/CidrIp/)
    expect(sandboxSg.resource.Properties.SecurityGroupIngress).toBeUndefined()
    template.resourceCountIs('AWS::EC2::SecurityGroupEgress', 0)
    template.resourceCountIs('AWS::EC2::SecurityGroupIngress', 0)
    expect(sandbox.resource.Properties.VpcConfig.SecurityGroupIds).toEqual([{ 'Fn::GetAtt': [sandboxSg.logicalId, 'GroupId'] }])
  })

  it('finds that prefix list at deploy time by the gateway endpoint\'s own service name, with a role that can do nothing else', () => {
    const lookup = resourceByPrefix(template, 'Custom::AWS', 'SandboxS3AccessS3PrefixList')
    // The call is JSON with the Region spliced in; compare it with the endpoint's ServiceName.
    const region = (value: any) =>
      value['Fn::Join'][1].map((part: unknown) => (typeof part === 'string' ? part : JSON.stringify(part) === '{"Ref":"AWS::Region"}' ? '<region>' : '<?>')).join('')
    const call = JSON.parse(region(lookup.resource.Properties.Create))
    expect(JSON.parse(region(lookup.resource.Properties.Update))).toEqual(call)
    const [, endpoint] = ofType('AWS::EC2::VPCEndpoint')[0]!
    expect(region(endpoint.Properties.ServiceName)).toBe('com.amazonaws.<region>.s3')
    expect(call).toEqual({
      service: 'EC2',
      action: 'describeManagedPrefixLists',
      parameters: { Filters: [{ Name: 'prefix-list-name', Values: [region(endpoint.Properties.ServiceName)] }] },
      physicalResourceId: { responsePath: PREFIX_LIST_ID_PATH },
      outputPaths: [PREFIX_LIST_ID_PATH],
    })
    // The SDK Lambda already has; no package download during the deploy.
    expect(lookup.resource.Properties.InstallLatestAwsSdk).toBe(false)

    const provider = resources[lookup.resource.Properties.ServiceToken['Fn::GetAtt'][0]]!
    const roleId = provider.Properties.Role['Fn::GetAtt'][0]
    expect(resources[roleId]!.Properties.ManagedPolicyArns).toBeUndefined()
    const statements = ofType('AWS::IAM::Policy')
      .filter(([, p]) => JSON.stringify(p.Properties.Roles) === JSON.stringify([{ Ref: roleId }]))
      .flatMap(([, p]) => p.Properties.PolicyDocument.Statement)
    expect(PREFIX_LIST_LOOKUP_ACTIONS).toEqual(['ec2:DescribeManagedPrefixLists'])
    expect(statements).toEqual(
      expect.arrayContaining([
        { Sid: 'DescribeManagedPrefixLists', Effect: 'Allow', Action: 'ec2:DescribeManagedPrefixLists', Resource: '*' },
        { Sid: 'OwnLogGroupOnly', Effect: 'Allow', Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Resource: { 'Fn::GetAtt': [provider.Properties.LoggingConfig.LogGroup.Ref, 'Arn'] } },
      ]),
    )
    expect(statements).toHaveLength(2)
    // Outside the sandbox's VPC: it reaches the EC2 API, the sandbox never calls it.
    expect(provider.Properties.VpcConfig).toBeUndefined()
  })
})

describe('sandbox DNS firewall', () => {
  const lists = Object.fromEntries(ofType('AWS::Route53Resolver::FirewallDomainList').map(([id, l]) => [id, l.Properties.Domains]))
  const [groupId, group] = ofType('AWS::Route53Resolver::FirewallRuleGroup')[0]!
  const rules = group.Properties.FirewallRules as any[]
  const listOf = (rule: any) => lists[rule.FirewallDomainListId['Fn::GetAtt'][0]]

  it('allows only the Regional S3 names (path and virtual-hosted style), in the stack\'s Region', () => {
    template.resourceCountIs('AWS::Route53Resolver::FirewallDomainList', 2)
    const allow = rules.find((r) => r.Action === 'ALLOW')
    expect(listOf(allow)).toEqual([regional('s3.'), regional('*.s3.')])
    // S3 answers with CNAMEs to other amazonaws.com names: trust the chain of an allowed name.
    expect(allow).toEqual({
      Action: 'ALLOW',
      Priority: ALLOW_RULE_PRIORITY,
      FirewallDomainListId: allow.FirewallDomainListId,
      FirewallDomainRedirectionAction: 'TRUST_REDIRECTION_DOMAIN',
    })
  })

  it('blocks every other name with NXDOMAIN, evaluated after the allow rule', () => {
    template.resourceCountIs('AWS::Route53Resolver::FirewallRuleGroup', 1)
    expect(rules).toHaveLength(2)
    const block = rules.find((r) => r.Action === 'BLOCK')
    expect(listOf(block)).toEqual(['*'])
    expect(block).toEqual({ Action: 'BLOCK', BlockResponse: 'NXDOMAIN', Priority: BLOCK_RULE_PRIORITY, FirewallDomainListId: block.FirewallDomainListId })
    // Lowest priority number first, first match wins: the allow rule must come first.
    expect(ALLOW_RULE_PRIORITY).toBeLessThan(BLOCK_RULE_PRIORITY)
  })

  it('is associated with the sandbox VPC and fails closed', () => {
    template.resourceCountIs('AWS::Route53Resolver::FirewallRuleGroupAssociation', 1)
    template.hasResourceProperties('AWS::Route53Resolver::FirewallRuleGroupAssociation', {
      FirewallRuleGroupId: { 'Fn::GetAtt': [groupId, 'Id'] },
      VpcId: { Ref: vpc.logicalId },
      Priority: 101,
    })
    template.resourceCountIs('AWS::Route53Resolver::FirewallConfig', 1)
    template.hasResourceProperties('AWS::Route53Resolver::FirewallConfig', {
      ResourceId: { Ref: vpc.logicalId },
      FirewallFailOpen: 'DISABLED',
    })
  })

  it('is in place before the sandbox function is created', () => {
    const association = resourceByPrefix(template, 'AWS::Route53Resolver::FirewallRuleGroupAssociation', 'DnsFirewall')
    const failClosed = resourceByPrefix(template, 'AWS::Route53Resolver::FirewallConfig', 'DnsFirewall')
    expect(resources[sandbox.logicalId]!.DependsOn).toEqual(expect.arrayContaining([association.logicalId, failClosed.logicalId]))
  })
})
