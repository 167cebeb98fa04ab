import { DynamoDBClient } from '@aws-sdk/client-dynamodb'
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb'
import type { APIGatewayAuthorizerResult, APIGatewayRequestAuthorizerEvent } from 'aws-lambda'
import { DynamoStore } from '../adapters/dynamo-store'
import { authenticate } from '../core/auth'
import { mostCapablePlan, parsePlans } from '../core/plans'
import type { KeyStore } from '../core/ports'
import type { OrganizationStore } from '../core/stores'

/**
 * API Gateway REQUEST authorizer: the gate in front of every route but /v1/health.
 *
 * It checks `Authorization: Bearer <key>` exactly like the API function does (the function still
 * checks it too), finds the organization's plan, and hands API Gateway the usage identifier of
 * that plan's usage plan (`usageIdentifierKey`), so clients send only their Bearer key and API
 * Gateway meters and throttles them per plan. The policy covers the whole stage, because API
 * Gateway caches it per Authorization header for every method.
 */
export interface AuthorizerDeps {
  store: KeyStore & Pick<OrganizationStore, 'getOrganization'>
  /** Plan name -> the value of the API Gateway API key attached to that plan's usage plan. */
  usageKeys: Record<string, string>
  defaultPlan: string
}

export type AuthorizerResult = APIGatewayAuthorizerResult & { usageIdentifierKey: string }

type AuthorizerEvent = Pick<APIGatewayRequestAuthorizerEvent, 'methodArn' | 'headers'>

export function createAuthorizer(deps: AuthorizerDeps) {
  return async (event: AuthorizerEvent): Promise<AuthorizerResult> => {
    const authorization = header(event.headers, 'authorization')
    let organizationId: string
    try {
      organizationId = (await authenticate(authorization, deps.store)).organizationId
    } catch (error) {
      // API Gateway answers 401 for exactly this message; anything else becomes a 500.
      if ((error as { statusCode?: number }).statusCode === 401) throw new Error('Unauthorized')
      throw error
    }
    const plan = (await deps.store.getOrganization(organizationId))?.plan ?? deps.defaultPlan
    // A plan without a usage plan (renamed, or added to PLANS_JSON only) is metered as the default.
    const usageIdentifierKey = deps.usageKeys[plan] ?? deps.usageKeys[deps.defaultPlan]
    if (!usageIdentifierKey) throw new Error(`No usage plan for plan "${plan}" or default plan "${deps.defaultPlan}"`)
    return {
      principalId: organizationId,
      policyDocument: {
        Version: '2012-10-17',
        Statement: [{ Action: 'execute-api:Invoke', Effect: 'Allow', Resource: stageArn(event.methodArn) }],
      },
      context: { organizationId, plan },
      usageIdentifierKey,
    }
  }
}

/** `arn:aws:execute-api:region:account:apiId/stage/VERB/path` -> `.../apiId/stage/*\/*`. */
export function stageArn(methodArn: string): string {
  const match = /^(arn:[^:]+:execute-api:[^:]+:[^:]+:[^/]+\/[^/]+)\//.exec(methodArn)
  if (!match) throw new Error(`Unexpected method ARN ${methodArn}`)
  return `${match[1]}/*/*`
}

function header(headers: Record<string, string | undefined> | null | undefined, name: string): string | undefined {
  for (const [key, value] of Object.entries(headers ?? {})) if (key.toLowerCase() === name) return value
  return undefined
}

/** Reads TABLE_NAME, PLAN_USAGE_KEYS (JSON plan -> key value), PLANS_JSON and DEFAULT_PLAN. */
export function authorizerDepsFromEnv(env: Record<string, string | undefined>, store?: AuthorizerDeps['store']): AuthorizerDeps {
  const tableName = env.TABLE_NAME
  if (!tableName && !store) throw new Error('Configuration error: TABLE_NAME is not set')
  const usageKeys = JSON.parse(env.PLAN_USAGE_KEYS ?? '{}') as Record<string, string>
  const plans = parsePlans(env.PLANS_JSON)
  const defaultPlan = env.DEFAULT_PLAN ?? (plans.free ? 'free' : mostCapablePlan(plans))
  return {
    store:
      store ??
      new DynamoStore(
        DynamoDBDocumentClient.from(new DynamoDBClient({}), { marshallOptions: { removeUndefinedValues: true } }),
        tableName!,
      ),
    usageKeys,
    defaultPlan,
  }
}

let authorize: ReturnType<typeof createAuthorizer> | undefined

export const handler = async (event: APIGatewayRequestAuthorizerEvent): Promise<AuthorizerResult> => {
  authorize ??= createAuthorizer(authorizerDepsFromEnv(process.env))
  return authorize(event)
}
