import { createHash } from 'node:crypto'
import { Duration, Stack } from 'aws-cdk-lib'
import * as apigw from 'aws-cdk-lib/aws-apigateway'
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb'
import * as iam from 'aws-cdk-lib/aws-iam'
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs'
import * as logs from 'aws-cdk-lib/aws-logs'
import { Construct } from 'constructs'
import type { UsagePlanConfig } from '../config'
import { ownLogGroupOnly } from './sandbox'
import { acknowledgeNodeRuntime, nodeFunctionProps, nodeSourceMapEnvironment } from './service-function'

/** The only table action the authorizer needs: it reads one key record and one organization. */
export const AUTHORIZER_TABLE_ACTIONS = ['dynamodb:GetItem']

export interface UsagePlansProps {
  readonly api: apigw.RestApi
  /** Organization plan name -> its throttle and daily quota (config `plans`). */
  readonly plans: Record<string, UsagePlanConfig>
  readonly table: dynamodb.ITableV2
  readonly logRetention: logs.RetentionDays
  /** Source maps in the authorizer's bundle and NODE_OPTIONS (config `api.sourceMaps`). */
  readonly sourceMaps: boolean
}

/**
 * Usage plans per organization plan, selected by a Lambda authorizer.
 *
 * Clients send only `Authorization: Bearer <key>`. The authorizer (functions/handlers/authorizer.ts)
 * looks the key up in the table, finds the organization's plan and returns, with an Allow policy,
 * the value of that plan's API Gateway API key as `usageIdentifierKey` (the API's key source is
 * AUTHORIZER). API Gateway then applies that plan's throttle and daily quota. Results are cached
 * per Authorization header for 60 s.
 *
 * One API Gateway API key per plan, with a deterministic value so the authorizer can be given it
 * at synth time. That value is a usage identifier shared by every organization on the plan, NOT a
 * credential: a request carrying it in `x-api-key` gains nothing, because the key source is the
 * authorizer and the authorizer (plus the API function's own check) is the gate.
 */
export class UsagePlans extends Construct {
  readonly authorizer: apigw.RequestAuthorizer
  readonly function: nodejs.NodejsFunction
  readonly role: iam.Role
  readonly usagePlans: Record<string, apigw.UsagePlan> = {}
  /** Plan name -> API key value (the authorizer's PLAN_USAGE_KEYS). */
  readonly usageKeys: Record<string, string> = {}

  constructor(scope: Construct, id: string, props: UsagePlansProps) {
    super(scope, id)
    const stack = Stack.of(this)
    const stage = props.api.deploymentStage

    for (const [plan, limits] of Object.entries(props.plans)) {
      const value = usageKeyValue(stack.node.addr, plan)
      this.usageKeys[plan] = value
      const key = new apigw.ApiKey(this, `${plan}Key`, {
        value,
        description: `Usage identifier of organization plan "${plan}" (returned by the authorizer; not a credential)`,
        enabled: true,
        stages: [stage],
      })
      const usagePlan = new apigw.UsagePlan(this, `${plan}Plan`, {
        name: `${stack.stackName}-${plan}`,
        description: `Organizations on plan "${plan}"`,
        throttle: { rateLimit: limits.rateLimit, burstLimit: limits.burstLimit },
        quota: { limit: limits.requestsPerDay, period: apigw.Period.DAY },
        apiStages: [{ api: props.api, stage }],
      })
      usagePlan.addApiKey(key)
      this.usagePlans[plan] = usagePlan
    }

    const logGroup = new logs.LogGroup(this, 'AuthorizerLogs', { retention: props.logRetention })
    this.role = new iam.Role(this, 'AuthorizerRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'API authorizer: own logs, read API keys and organizations from its table',
    })
    this.role.addToPolicy(ownLogGroupOnly(logGroup))
    this.role.addToPolicy(
      new iam.PolicyStatement({ sid: 'ReadTable', actions: AUTHORIZER_TABLE_ACTIONS, resources: [props.table.tableArn] }),
    )
    this.function = new nodejs.NodejsFunction(this, 'AuthorizerFunction', {
      ...nodeFunctionProps('functions/handlers/authorizer.ts', { sourceMaps: props.sourceMaps }),
      description: 'Code interpreter API authorizer: API key -> organization and usage plan',
      memorySize: 256,
      timeout: Duration.seconds(10),
      role: this.role,
      logGroup,
      environment: {
        TABLE_NAME: props.table.tableName,
        PLAN_USAGE_KEYS: JSON.stringify(this.usageKeys),
        ...nodeSourceMapEnvironment(props.sourceMaps),
      },
    })
    acknowledgeNodeRuntime(this.function)

    this.authorizer = new apigw.RequestAuthorizer(this, 'Authorizer', {
      handler: this.function,
      identitySources: [apigw.IdentitySource.header('Authorization')],
      resultsCacheTtl: Duration.seconds(60),
    })
  }
}

/** `usage-<plan>-<32 hex>`: stable per stack and plan, so redeploys keep the same key value. */
export function usageKeyValue(stackAddress: string, plan: string): string {
  return `usage-${plan}-${createHash('sha256').update(`${stackAddress}/${plan}`).digest('hex').slice(0, 32)}`
}
