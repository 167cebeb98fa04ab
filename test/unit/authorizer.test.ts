import { describe, expect, it } from 'vitest'
import { hashApiKey } from '../../functions/core/ids'
import type { ApiKeyRecord } from '../../functions/core/ports'
import type { Organization } from '../../functions/core/stores'
import { type AuthorizerDeps, authorizerDepsFromEnv, createAuthorizer, stageArn } from '../../functions/handlers/authorizer'

const METHOD_ARN = 'arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/POST/v1/responses'
const STAGE_ARN = 'arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/*/*'
const USAGE_KEYS = { free: 'usage-free-0123456789abcdef', standard: 'usage-standard-0123456789abcdef', enterprise: 'usage-enterprise-0123456789abcdef' }

/** In-memory keys and organizations, no AWS. */
function fakeStore(keys: Record<string, ApiKeyRecord>, orgs: Organization[]): AuthorizerDeps['store'] {
  const byHash = new Map(Object.entries(keys).map(([key, record]) => [hashApiKey(key), record]))
  return {
    findByHash: async (hash) => byHash.get(hash),
    put: async (hash, record) => void byHash.set(hash, record),
    getOrganization: async (id) => orgs.find((o) => o.id === id),
  }
}

const authorize = createAuthorizer({
  store: fakeStore(
    {
      sk_acme_key_0123456789: { organizationId: 'org_acme', keyId: 'key_1' },
      sk_nobody_0123456789: { organizationId: 'org_norecord', keyId: 'key_2' },
      sk_legacy_0123456789: { organizationId: 'org_legacy', keyId: 'key_3' },
    },
    [
      { id: 'org_acme', plan: 'enterprise', created_at: 0 },
      { id: 'org_legacy', plan: 'gold', created_at: 0 },
    ],
  ),
  usageKeys: USAGE_KEYS,
  defaultPlan: 'free',
})
const event = (headers: Record<string, string> | null) => ({ methodArn: METHOD_ARN, headers })

describe('API authorizer', () => {
  it('allows a known key for the whole stage, naming the organization and its plan usage key', async () => {
    expect(await authorize(event({ Authorization: 'Bearer sk_acme_key_0123456789' }))).toEqual({
      principalId: 'org_acme',
      policyDocument: {
        Version: '2012-10-17',
        Statement: [{ Action: 'execute-api:Invoke', Effect: 'Allow', Resource: STAGE_ARN }],
      },
      context: { organizationId: 'org_acme', plan: 'enterprise' },
      usageIdentifierKey: USAGE_KEYS.enterprise,
    })
  })

  it('reads the header case-insensitively', async () => {
    const result = await authorize(event({ authorization: 'Bearer sk_acme_key_0123456789' }))
    expect(result.principalId).toBe('org_acme')
  })

  it('puts an organization without a record on the default plan', async () => {
    const result = await authorize(event({ Authorization: 'Bearer sk_nobody_0123456789' }))
    expect(result.context).toEqual({ organizationId: 'org_norecord', plan: 'free' })
    expect(result.usageIdentifierKey).toBe(USAGE_KEYS.free)
  })

  it('meters a plan without a usage plan as the default plan', async () => {
    const result = await authorize(event({ Authorization: 'Bearer sk_legacy_0123456789' }))
    expect(result.context).toEqual({ organizationId: 'org_legacy', plan: 'gold' })
    expect(result.usageIdentifierKey).toBe(USAGE_KEYS.free)
  })

  it.each([
    ['an unknown key', { Authorization: 'Bearer sk_unknown_0123456789' }],
    ['a malformed header', { Authorization: 'Basic dXNlcjpwYXNz' }],
    ['no header', {}],
    ['no headers at all', null],
  ])('throws Unauthorized (API Gateway 401) for %s', async (_name, headers) => {
    await expect(authorize(event(headers))).rejects.toThrow(/^Unauthorized$/)
  })

  it('fails (500, not 401) when the store fails', async () => {
    const broken = createAuthorizer({
      store: { ...fakeStore({}, []), findByHash: async () => Promise.reject(new Error('DynamoDB down')) },
      usageKeys: USAGE_KEYS,
      defaultPlan: 'free',
    })
    await expect(broken(event({ Authorization: 'Bearer sk_acme_key_0123456789' }))).rejects.toThrow('DynamoDB down')
  })

  it('builds the stage-wide ARN from a method ARN', () => {
    expect(stageArn(METHOD_ARN)).toBe(STAGE_ARN)
    expect(stageArn('arn:aws-cn:execute-api:cn-north-1:123456789012:x9/prod/GET/')).toBe('arn:aws-cn:execute-api:cn-north-1:123456789012:x9/prod/*/*')
    expect(() => stageArn('not-an-arn')).toThrow(/Unexpected method ARN/)
  })

  it('reads its settings from the environment', () => {
    const store = fakeStore({}, [])
    const deps = authorizerDepsFromEnv({ TABLE_NAME: 't', PLAN_USAGE_KEYS: JSON.stringify(USAGE_KEYS) }, store)
    expect(deps).toEqual({ store, usageKeys: USAGE_KEYS, defaultPlan: 'free' })
    expect(authorizerDepsFromEnv({ TABLE_NAME: 't', DEFAULT_PLAN: 'standard' }, store).defaultPlan).toBe('standard')
    expect(() => authorizerDepsFromEnv({})).toThrow(/TABLE_NAME/)
  })
})
