import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb'
import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb'
import type { Assistant, ResponseObject } from '../contract/responses'
import type { ApiKeyRecord, KeyStore } from '../core/ports'
import type {
  AssistantStore,
  Conversation,
  KeyAdmin,
  Organization,
  OrganizationStore,
  ResponseStore,
  SessionStore,
  UsageMeter,
} from '../core/stores'

/** DynamoDB keeps items under 400 KB; a larger response is stored without inline media. */
const MAX_ITEM_BYTES = 350_000
const DAY_SECONDS = 86_400
/** A session's Python state lives in its item while it fits (base64 characters). */
export const MAX_SESSION_STATE_CHARS = 300_000
/** A session idle this long is forgotten (DynamoDB TTL, and checked on read). */
const SESSION_TTL_SECONDS = 7 * DAY_SECONDS

/**
 * Every record of the service in one table (pk, sk):
 *   org#<org> / org            the organization and its plan
 *   org#<org> / asst#<id>      an assistant
 *   org#<org> / resp#<id>      a stored response (and its conversation)
 *   org#<org> / sess#<id>      a session's Python state (expires after a week idle)
 *   org#<org> / idem#<sha256>  the response an Idempotency-Key got (expires after a day)
 *   org#<org> / usage#<day>    code blocks run that UTC day (expires after a week)
 *   org#<org> / key#<keyId>    an API key's listing entry (its hash, never the key)
 *   apikey#<sha256> / apikey   the lookup entry used to authenticate
 * Every read names the organization in the partition key, so no query can reach another's data.
 */
export class DynamoStore
  implements KeyStore, KeyAdmin, OrganizationStore, AssistantStore, ResponseStore, SessionStore, UsageMeter
{
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  // --- API keys -------------------------------------------------------------------------------

  async findByHash(hash: string): Promise<ApiKeyRecord | undefined> {
    const item = await this.get(`apikey#${hash}`, 'apikey')
    if (!item || item.revoked_at) return undefined
    return { organizationId: String(item.organization_id), keyId: String(item.key_id) }
  }

  async put(hash: string, record: ApiKeyRecord): Promise<void> {
    const created_at = new Date().toISOString()
    await this.doc.send(
      new PutCommand({
        TableName: this.table,
        Item: { pk: `apikey#${hash}`, sk: 'apikey', organization_id: record.organizationId, key_id: record.keyId, created_at },
      }),
    )
    await this.doc.send(
      new PutCommand({
        TableName: this.table,
        Item: { pk: `org#${record.organizationId}`, sk: `key#${record.keyId}`, hash, created_at },
      }),
    )
  }

  async listKeys(organizationId: string) {
    const items = await this.query(organizationId, 'key#', 100)
    return items.map((i) => ({ keyId: String(i.sk).slice(4), createdAt: String(i.created_at), revokedAt: i.revoked_at as string | undefined }))
  }

  async revokeKey(organizationId: string, keyId: string): Promise<boolean> {
    const entry = await this.get(`org#${organizationId}`, `key#${keyId}`)
    if (!entry) return false
    const revoked_at = new Date().toISOString()
    await this.doc.send(
      new UpdateCommand({
        TableName: this.table,
        Key: { pk: `apikey#${entry.hash}`, sk: 'apikey' },
        UpdateExpression: 'SET revoked_at = :r',
        ExpressionAttributeValues: { ':r': revoked_at },
      }),
    )
    await this.doc.send(
      new UpdateCommand({
        TableName: this.table,
        Key: { pk: `org#${organizationId}`, sk: `key#${keyId}` },
        UpdateExpression: 'SET revoked_at = :r',
        ExpressionAttributeValues: { ':r': revoked_at },
      }),
    )
    return true
  }

  // --- organizations --------------------------------------------------------------------------

  async getOrganization(id: string): Promise<Organization | undefined> {
    const item = await this.get(`org#${id}`, 'org')
    return item ? { id, plan: String(item.plan), name: item.name as string | undefined, created_at: Number(item.created_at) } : undefined
  }

  async putOrganization(org: Organization): Promise<void> {
    await this.doc.send(new PutCommand({ TableName: this.table, Item: { pk: `org#${org.id}`, sk: 'org', ...org } }))
  }

  // --- assistants -----------------------------------------------------------------------------

  async putAssistant(assistant: Assistant): Promise<void> {
    await this.doc.send(
      new PutCommand({ TableName: this.table, Item: { pk: `org#${assistant.organization_id}`, sk: `asst#${assistant.id}`, data: assistant } }),
    )
  }

  async getAssistant(organizationId: string, id: string): Promise<Assistant | undefined> {
    return (await this.get(`org#${organizationId}`, `asst#${id}`))?.data as Assistant | undefined
  }

  async listAssistants(organizationId: string, limit: number, after?: string): Promise<Assistant[]> {
    const items = await this.query(organizationId, 'asst#', limit, after ? `asst#${after}` : undefined)
    return items.map((i) => i.data as Assistant)
  }

  async deleteAssistant(organizationId: string, id: string): Promise<boolean> {
    const out = await this.doc.send(
      new DeleteCommand({ TableName: this.table, Key: { pk: `org#${organizationId}`, sk: `asst#${id}` }, ReturnValues: 'ALL_OLD' }),
    )
    return out.Attributes !== undefined
  }

  // --- responses ------------------------------------------------------------------------------

  async putResponse(response: ResponseObject, conversation?: Conversation): Promise<void> {
    let data: ResponseObject = response
    if (Buffer.byteLength(JSON.stringify(response)) > MAX_ITEM_BYTES / 2) data = withoutInlineMedia(response)
    // The conversation is kept only while it fits beside the response in one item.
    const keep = conversation && Buffer.byteLength(JSON.stringify(conversation)) < MAX_ITEM_BYTES / 2 ? conversation : undefined
    await this.doc.send(
      new PutCommand({
        TableName: this.table,
        Item: { pk: `org#${response.organization_id}`, sk: `resp#${response.id}`, data, conversation: keep },
      }),
    )
  }

  async saveProgress(response: ResponseObject): Promise<boolean> {
    const out = await this.doc.send(
      new UpdateCommand({
        TableName: this.table,
        Key: { pk: `org#${response.organization_id}`, sk: `resp#${response.id}` },
        UpdateExpression: 'SET #data = :data',
        ExpressionAttributeNames: { '#data': 'data' },
        ExpressionAttributeValues: { ':data': Buffer.byteLength(JSON.stringify(response)) > MAX_ITEM_BYTES / 2 ? withoutInlineMedia(response) : response },
        ReturnValues: 'ALL_NEW',
      }),
    )
    return out.Attributes?.cancel_requested === true
  }

  async requestCancel(organizationId: string, id: string): Promise<boolean> {
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { pk: `org#${organizationId}`, sk: `resp#${id}` },
          UpdateExpression: 'SET cancel_requested = :yes',
          ConditionExpression: 'attribute_exists(pk)',
          ExpressionAttributeValues: { ':yes': true },
        }),
      )
      return true
    } catch (error) {
      if ((error as Error).name === 'ConditionalCheckFailedException') return false
      throw error
    }
  }

  async claimIdempotencyKey(organizationId: string, keyHash: string, responseId: string, now: Date): Promise<string | undefined> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: {
            pk: `org#${organizationId}`,
            sk: `idem#${keyHash}`,
            response_id: responseId,
            expires_at: Math.floor(now.getTime() / 1000) + DAY_SECONDS,
          },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      )
      return undefined
    } catch (error) {
      if ((error as Error).name !== 'ConditionalCheckFailedException') throw error
      return String((await this.get(`org#${organizationId}`, `idem#${keyHash}`))?.response_id)
    }
  }

  async getConversation(organizationId: string, id: string): Promise<Conversation | undefined> {
    return (await this.get(`org#${organizationId}`, `resp#${id}`))?.conversation as Conversation | undefined
  }

  // --- sessions -------------------------------------------------------------------------------

  async getSessionState(organizationId: string, sessionId: string): Promise<string | undefined> {
    const item = await this.get(`org#${organizationId}`, `sess#${sessionId}`)
    if (!item || (typeof item.expires_at === 'number' && item.expires_at * 1000 < Date.now())) return undefined
    return item.state as string | undefined
  }

  sessionStateFits(state: string): boolean {
    return state.length <= MAX_SESSION_STATE_CHARS
  }

  async putSessionState(organizationId: string, sessionId: string, state: string, now: Date): Promise<boolean> {
    if (!this.sessionStateFits(state)) return false
    await this.doc.send(
      new PutCommand({
        TableName: this.table,
        Item: {
          pk: `org#${organizationId}`,
          sk: `sess#${sessionId}`,
          state,
          updated_at: now.toISOString(),
          expires_at: Math.floor(now.getTime() / 1000) + SESSION_TTL_SECONDS,
        },
      }),
    )
    return true
  }

  async getResponse(organizationId: string, id: string): Promise<ResponseObject | undefined> {
    return (await this.get(`org#${organizationId}`, `resp#${id}`))?.data as ResponseObject | undefined
  }

  async listResponses(organizationId: string, options: { schedule?: string; limit: number; after?: string }): Promise<ResponseObject[]> {
    // Response ids are random, so "newest first" sorts on created_at after the query.
    const out: ResponseObject[] = []
    let start: Record<string, unknown> | undefined
    do {
      const page = await this.doc.send(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
          FilterExpression: options.schedule ? '#d.#s = :schedule' : undefined,
          ExpressionAttributeNames: options.schedule ? { '#d': 'data', '#s': 'schedule' } : undefined,
          ExpressionAttributeValues: { ':pk': `org#${organizationId}`, ':prefix': 'resp#', ...(options.schedule ? { ':schedule': options.schedule } : {}) },
          ExclusiveStartKey: start,
          ConsistentRead: true,
        }),
      )
      for (const item of page.Items ?? []) out.push(item.data as ResponseObject)
      start = page.LastEvaluatedKey
    } while (start && out.length < 10_000)
    out.sort((a, b) => b.created_at - a.created_at || (a.id < b.id ? 1 : -1))
    const from = options.after ? out.findIndex((r) => r.id === options.after) + 1 : 0
    return out.slice(from, from + options.limit)
  }

  // --- usage ----------------------------------------------------------------------------------

  async tryConsumeExecution(organizationId: string, limitPerDay: number, now: Date): Promise<boolean> {
    return this.tryReserveExecutions(organizationId, 1, limitPerDay, now)
  }

  /** Atomically counts `count` code blocks for today if that stays within the limit. */
  async tryReserveExecutions(organizationId: string, count: number, limitPerDay: number, now: Date): Promise<boolean> {
    if (count > limitPerDay) return false
    const day = now.toISOString().slice(0, 10)
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { pk: `org#${organizationId}`, sk: `usage#${day}` },
          UpdateExpression: 'ADD executions :n SET expires_at = if_not_exists(expires_at, :ttl)',
          ConditionExpression: 'attribute_not_exists(executions) OR executions <= :max',
          ExpressionAttributeValues: { ':n': count, ':max': limitPerDay - count, ':ttl': Math.floor(now.getTime() / 1000) + 7 * DAY_SECONDS },
        }),
      )
      return true
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException || (error as Error).name === 'ConditionalCheckFailedException') return false
      throw error
    }
  }

  // --- helpers --------------------------------------------------------------------------------

  private async get(pk: string, sk: string): Promise<Record<string, unknown> | undefined> {
    const out = await this.doc.send(new GetCommand({ TableName: this.table, Key: { pk, sk }, ConsistentRead: true }))
    return out.Item
  }

  private async query(organizationId: string, prefix: string, limit: number, after?: string) {
    const out = await this.doc.send(
      new QueryCommand({
        TableName: this.table,
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
        ExpressionAttributeValues: { ':pk': `org#${organizationId}`, ':prefix': prefix },
        ExclusiveStartKey: after ? { pk: `org#${organizationId}`, sk: after } : undefined,
        Limit: limit,
        ConsistentRead: true,
      }),
    )
    return out.Items ?? []
  }
}

/** The stored copy of a response too large for one item keeps every output but inline bytes. */
function withoutInlineMedia(response: ResponseObject): ResponseObject {
  return {
    ...response,
    output: response.output.map((item) =>
      item.type !== 'code_interpreter_call'
        ? item
        : {
            ...item,
            outputs: item.outputs.map((o) =>
              o.type === 'image' || o.type === 'file' ? { ...o, data: '', data_omitted: true } : o,
            ) as typeof item.outputs,
          },
    ),
  }
}
