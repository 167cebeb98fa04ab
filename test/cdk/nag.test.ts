import { Stack, Validations } from 'aws-cdk-lib'
import * as s3 from 'aws-cdk-lib/aws-s3'
import { AwsSolutionsChecks } from 'cdk-nag'
import type { IConstruct } from 'constructs'
import { describe, expect, it } from 'vitest'
import { buildStack } from './support'

/** Every cdk-nag acknowledgement in the tree (CDK adds its own CloudFormation-Validate ones), as "path: id" -> reason. */
function acknowledgements(root: IConstruct): Map<string, string> {
  const found = new Map<string, string>()
  for (const c of root.node.findAll()) {
    for (const entry of c.node.metadata) {
      if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue
      for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) {
        if (!id.replace(/^annotation::/i, '').startsWith('AwsSolutions-')) continue
        found.set(`${c.node.path}: ${id.replace(/^annotation::/i, '')}`, reason)
      }
    }
  }
  return found
}

const findings = (scope: IConstruct) =>
  new AwsSolutionsChecks(scope).validateScope(scope).violations.map(
    (v) => `${v.severity} ${v.ruleName} at ${v.violatingResources.map((r) => r.constructPath).join(', ')}`,
  )

describe('cdk-nag AwsSolutions', () => {
  it('leaves no unacknowledged finding, warnings included', () => {
    const { app } = buildStack()
    expect(findings(app)).toEqual([])
  })

  it('passes when registered the way bin/app.ts does it', () => {
    const { app } = buildStack()
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app))
    expect(() => app.synth()).not.toThrow()
  })

  it('still catches a new finding (the check is live)', () => {
    const { app } = buildStack()
    new s3.Bucket(new Stack(app, 'Canary'), 'Unsafe')
    expect(findings(app).join('\n')).toMatch(/AwsSolutions-S10 at Canary\/Unsafe/)
  })

  it('acknowledges only a reviewed list, each with a specific reason', () => {
    const { stack } = buildStack()
    const acks = acknowledgements(stack)
    expect([...acks.keys()].sort()).toEqual(
      [
        'CodeInterpreter/Api/Function: AwsSolutions-L1',
        'CodeInterpreter/Api/Role/DefaultPolicy: AwsSolutions-IAM5[Resource::<StorageBucket5CB7C8EA.Arn>/files/*]',
        'CodeInterpreter/Api/Role/DefaultPolicy: AwsSolutions-IAM5[Resource::<StorageBucket5CB7C8EA.Arn>/state/*]',
        'CodeInterpreter/Api/Role/DefaultPolicy: AwsSolutions-IAM5[Resource::<StorageBucket5CB7C8EA.Arn>/uploads/*]',
        'CodeInterpreter/Api/Role/DefaultPolicy: AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:*::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0]',
        'CodeInterpreter/RestApi/Api: AwsSolutions-APIG3',
        'CodeInterpreter/RestApi/Api/CloudWatchRole: AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
        'CodeInterpreter/SandboxS3Access/S3PrefixList/CustomResourcePolicy: AwsSolutions-IAM5[Resource::*]',
        'CodeInterpreter/RestApi/UsagePlans/AuthorizerFunction: AwsSolutions-L1',
        'CodeInterpreter/RestApi/Api: AwsSolutions-APIG4',
        'CodeInterpreter/RestApi/Api: AwsSolutions-APIG6',
        'CodeInterpreter/RestApi/Api: AwsSolutions-COG4',
        'CodeInterpreter/Sandbox/Role: AwsSolutions-IAM5[Resource::*]',
        'CodeInterpreter/Worker/Function: AwsSolutions-L1',
        'CodeInterpreter/Worker/FailedRuns/Function: AwsSolutions-L1',
        'CodeInterpreter/Worker/FailedRuns/Role/DefaultPolicy: AwsSolutions-IAM5[Resource::<StorageBucket5CB7C8EA.Arn>/state/*/jobs/*]',
        'CodeInterpreter/Worker/Role/DefaultPolicy: AwsSolutions-IAM5[Resource::<StorageBucket5CB7C8EA.Arn>/files/*]',
        'CodeInterpreter/Worker/Role/DefaultPolicy: AwsSolutions-IAM5[Resource::<StorageBucket5CB7C8EA.Arn>/state/*]',
        'CodeInterpreter/Worker/Role/DefaultPolicy: AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:*::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0]',
      ].sort(),
    )
    for (const reason of acks.values()) expect(reason.length).toBeGreaterThan(40)
  })
})
