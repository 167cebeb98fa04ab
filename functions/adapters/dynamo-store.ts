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
  AbandonWhen,
  AssistantStore,
  Conversation,
  KeyAdmin,
  Organization,
  OrganizationStore,
  ResponseStore,
  FileStore,
  RunLease,
  SessionRecord,
  SessionStore,
  UsageMeter,
} from '../core/stores'
import type { FileObject } from '../contract/files'

/** DynamoDB keeps items under 400 KB; a larger response is stored with its longest texts cut. */
const MAX_ITEM_BYTES = 350_000
const DAY_SECONDS = 86_400
/** An expired session's record stays this long, so its callers hear 410 session_expired. */
const SESSION_TOMBSTONE_SECONDS = 30 * DAY_SECONDS
const sessionExpiry = (s: SessionRecord) => s.last_active_at + s.idle_seconds + SESSION_TOMBSTONE_SECONDS

/**
 * Every record of the service in one table (pk, sk):
 *   org#<org> / org            the organization and its plan
 *   org#<org> / asst#<id>      an assistant
 *   org#<org> / resp#<id>      a stored response (and its conversation); a background run's also
 *                              taken_at, run_until, taken_by (its worker's lease) and, once given
 *                              up, abandoned_at (then no write changes it again)
 *   org#<org> / sess#<id>      a session: its Python state manifest and generated files
 *   org#<org> / file#<id>      a file's metadata (its bytes are in the bucket under `key`)
 *   org#<org> / idem#<sha256>  the response an Idempotency-Key got (expires after a day)
 *   org#<org> / usage#<day>    code blocks run that UTC day (expires after a week)
 *   org#<org> / key#<keyId>    an API key's listing entry (its hash, never the key)
 *   apikey#<sha256> / apikey   the lookup entry used to authenticate
 * Every read names the organization in the partition key, so no query can reach another's data.
 */
export class DynamoStore
  implements KeyStore, KeyAdmin, OrganizationStore, AssistantStore, ResponseStore, SessionStore, FileStore, UsageMeter
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
    return this.deleteItem(`org#${organizationId}`, `asst#${id}`)
  }

  // --- responses ------------------------------------------------------------------------------

  async putResponse(response: ResponseObject, conversation?: Conversation): Promise<void> {
    let data: ResponseObject = response
    if (Buffer.byteLength(JSON.stringify(response)) > MAX_ITEM_BYTES / 2) data = withTextsCut(response)
    // The conversation is kept only while it fits beside the response in one item.
    const keep = conversation && Buffer.byteLength(JSON.stringify(conversation)) < MAX_ITEM_BYTES / 2 ? conversation : undefined
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: { pk: `org#${response.organization_id}`, sk: `resp#${response.id}`, data, conversation: keep },
          // A run given up (abandonRun) stays failed: a worker that turns up late changes nothing.
          ConditionExpression: 'attribute_not_exists(abandoned_at)',
        }),
      )
    } catch (error) {
      if ((error as Error).name !== 'ConditionalCheckFailedException') throw error
    }
  }

  async saveProgress(response: ResponseObject): Promise<boolean> {
    try {
      const out = await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { pk: `org#${response.organization_id}`, sk: `resp#${response.id}` },
          UpdateExpression: 'SET #data = :data',
          ConditionExpression: 'attribute_not_exists(abandoned_at)',
          ExpressionAttributeNames: { '#data': 'data' },
          ExpressionAttributeValues: { ':data': Buffer.byteLength(JSON.stringify(response)) > MAX_ITEM_BYTES / 2 ? withTextsCut(response) : response },
          ReturnValues: 'ALL_NEW',
        }),
      )
      return out.Attributes?.cancel_requested === true
    } catch (error) {
      if ((error as Error).name === 'ConditionalCheckFailedException') return true // given up: stop
      throw error
    }
  }

  async takeQueued(organizationId: string, id: string, lease?: RunLease): Promise<boolean> {
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { pk: `org#${organizationId}`, sk: `resp#${id}` },
          UpdateExpression: `SET taken_at = :now${lease ? ', run_until = :until' : ''}${lease?.by ? ', taken_by = :by' : ''}`,
          ConditionExpression: 'attribute_exists(pk) AND attribute_not_exists(taken_at) AND #data.#status = :queued',
          ExpressionAttributeNames: { '#data': 'data', '#status': 'status' },
          ExpressionAttributeValues: {
            ':now': new Date().toISOString(),
            ':queued': 'queued',
            ...(lease ? { ':until': lease.until } : {}),
            ...(lease?.by ? { ':by': lease.by } : {}),
          },
        }),
      )
      return true
    } catch (error) {
      if ((error as Error).name === 'ConditionalCheckFailedException') return false
      throw error
    }
  }

  async abandonRun(failed: ResponseObject, when: AbandonWhen): Promise<boolean> {
    const values: Record<string, unknown> = {
      ':data': Buffer.byteLength(JSON.stringify(failed)) > MAX_ITEM_BYTES / 2 ? withTextsCut(failed) : failed,
      ':at': new Date().toISOString(),
      ':queued': 'queued',
      ':running': 'in_progress',
    }
    let which: string
    if ('untaken' in when) {
      which = 'attribute_not_exists(taken_at)'
      if (when.untaken.createdBy !== undefined) {
        which += ' AND #data.created_at <= :createdBy'
        values[':createdBy'] = when.untaken.createdBy
      }
    } else {
      const cases = ['run_until <= :leaseEndedBy']
      values[':leaseEndedBy'] = when.taken.leaseEndedBy
      if (when.taken.by !== undefined) {
        cases.push('taken_by = :by')
        values[':by'] = when.taken.by
      }
      if (when.taken.unleasedTakenBy !== undefined) {
        cases.push('(attribute_not_exists(run_until) AND taken_at <= :takenBy)')
        values[':takenBy'] = new Date(when.taken.unleasedTakenBy).toISOString()
      }
      which = `attribute_exists(taken_at) AND (${cases.join(' OR ')})`
    }
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { pk: `org#${failed.organization_id}`, sk: `resp#${failed.id}` },
          UpdateExpression: 'SET #data = :data, abandoned_at = :at',
          ConditionExpression:
            `attribute_exists(pk) AND attribute_not_exists(abandoned_at) AND #data.#status IN (:queued, :running) AND (${which})`,
          ExpressionAttributeNames: { '#data': 'data', '#status': 'status' },
          ExpressionAttributeValues: values,
        }),
      )
      return true
    } catch (error) {
      if ((error as Error).name === 'ConditionalCheckFailedException') return false
      throw error
    }
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

  async getSession(organizationId: string, id: string): Promise<SessionRecord | undefined> {
    const item = await this.get(`org#${organizationId}`, `sess#${id}`)
    return item ? (item.data as SessionRecord) : undefined
  }

  async claimSession(
    session: SessionRecord,
    holder: string,
    until: number,
    now: number,
    create: boolean,
    tookOver?: (previousHolder: string) => void,
  ): Promise<SessionRecord | 'busy' | 'missing'> {
    const key = { pk: `org#${session.organization_id}`, sk: `sess#${session.id}` }
    try {
      if (create) {
        await this.doc.send(
          new PutCommand({
            TableName: this.table,
            Item: { ...key, data: session, expires_at: sessionExpiry(session), lease_holder: holder, lease_until: until },
            ConditionExpression: 'attribute_not_exists(pk)',
          }),
        )
        return session
      }
      const out = await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: key,
          UpdateExpression: 'SET lease_holder = :h, lease_until = :u',
          ConditionExpression: 'attribute_exists(pk) AND (attribute_not_exists(lease_until) OR lease_until < :now OR lease_holder = :h)',
          ExpressionAttributeValues: { ':h': holder, ':u': until, ':now': now },
          // The item as it was: the update touches only the lease, so `data` is the same, and the
          // lease it replaced tells whose lapsed claim this one took over.
          ReturnValues: 'ALL_OLD',
        }),
      )
      const before = out.Attributes!
      if (typeof before.lease_holder === 'string' && before.lease_holder !== holder) tookOver?.(before.lease_holder)
      return before.data as SessionRecord
    } catch (error) {
      if ((error as Error).name !== 'ConditionalCheckFailedException') throw error
      return (await this.get(key.pk, key.sk)) ? 'busy' : 'missing'
    }
  }

  async putSession(session: SessionRecord, condition?: { holder: string } | { create: true }): Promise<boolean> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: { pk: `org#${session.organization_id}`, sk: `sess#${session.id}`, data: session, expires_at: sessionExpiry(session) },
          ...(condition && 'holder' in condition
            ? { ConditionExpression: 'lease_holder = :h', ExpressionAttributeValues: { ':h': condition.holder } }
            : condition
              ? { ConditionExpression: 'attribute_not_exists(pk)' }
              : {}),
        }),
      )
      return true
    } catch (error) {
      if ((error as Error).name !== 'ConditionalCheckFailedException') throw error
      return false
    }
  }

  async deleteSession(organizationId: string, id: string): Promise<boolean> {
    return this.deleteItem(`org#${organizationId}`, `sess#${id}`)
  }

  // --- files ----------------------------------------------------------------------------------

  async putFile(file: FileObject & { key: string }): Promise<void> {
    await this.doc.send(
      new PutCommand({ TableName: this.table, Item: { pk: `org#${file.organization_id}`, sk: `file#${file.id}`, data: file } }),
    )
  }

  async getFile(organizationId: string, id: string): Promise<(FileObject & { key: string }) | undefined> {
    return (await this.get(`org#${organizationId}`, `file#${id}`))?.data as (FileObject & { key: string }) | undefined
  }

  async listFiles(organizationId: string, options: { limit: number; after?: string; purpose?: string }): Promise<FileObject[]> {
    const filter = options.purpose ? { field: 'purpose', value: options.purpose } : undefined
    return this.newestFirst(organizationId, 'file#', filter, options, (data) => {
      const { key: _key, ...file } = data as FileObject & { key: string }
      return file
    })
  }

  async deleteFile(organizationId: string, id: string): Promise<boolean> {
    return this.deleteItem(`org#${organizationId}`, `file#${id}`)
  }

  async getResponse(organizationId: string, id: string): Promise<ResponseObject | undefined> {
    return (await this.get(`org#${organizationId}`, `resp#${id}`))?.data as ResponseObject | undefined
  }

  async listResponses(organizationId: string, options: { schedule?: string; limit: number; after?: string }): Promise<ResponseObject[]> {
    const filter = options.schedule ? { field: 'schedule', value: options.schedule } : undefined
    return this.newestFirst(organizationId, 'resp#', filter, options, (data) => data as ResponseObject)
  }

  /** A page of an organization's records of one kind, newest first (ids are random: sorted after the query). */
  private async newestFirst<T extends { id: string; created_at: number }>(
    organizationId: string,
    prefix: string,
    filter: { field: string; value: string } | undefined,
    page: { limit: number; after?: string },
    map: (data: unknown) => T,
  ): Promise<T[]> {
    const out: T[] = []
    let start: Record<string, unknown> | undefined
    do {
      const result = await this.doc.send(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
          FilterExpression: filter ? '#d.#f = :value' : undefined,
          ExpressionAttributeNames: filter ? { '#d': 'data', '#f': filter.field } : undefined,
          ExpressionAttributeValues: { ':pk': `org#${organizationId}`, ':prefix': prefix, ...(filter ? { ':value': filter.value } : {}) },
          ExclusiveStartKey: start,
          ConsistentRead: true,
        }),
      )
      for (const item of result.Items ?? []) out.push(map(item.data))
      start = result.LastEvaluatedKey
    } while (start && out.length < 10_000)
    out.sort((a, b) => b.created_at - a.created_at || (a.id < b.id ? 1 : -1))
    const from = page.after ? out.findIndex((r) => r.id === page.after) + 1 : 0
    return out.slice(from, from + page.limit)
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

  private async deleteItem(pk: string, sk: string): Promise<boolean> {
    const out = await this.doc.send(new DeleteCommand({ TableName: this.table, Key: { pk, sk }, ReturnValues: 'ALL_OLD' }))
    return out.Attributes !== undefined
  }

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

/** The stored copy of a response too large for one item: no inline images, then the longest texts halved, saying so. */
function withTextsCut(response: ResponseObject): ResponseObject {
  const copy = structuredClone(response)
  // Each cuttable string, as a getter and setter over its output item.
  const fields: { get: () => string; set: (v: string) => void }[] = []
  for (const item of copy.output) {
    if (item.type !== 'code_interpreter_call') continue
    for (const o of item.outputs) {
      if (o.type === 'text') fields.push({ get: () => o.text, set: (v) => (o.text = v) })
      else if (o.type === 'error') fields.push({ get: () => o.traceback, set: (v) => (o.traceback = v) })
    }
  }
  // Inline image URLs go first: the image stays available through its file_id.
  for (const item of copy.output) {
    if (item.type !== 'code_interpreter_call') continue
    for (const o of item.outputs) if (o.type === 'image') delete o.url
  }
  for (let i = 0; i < 64 && fields.length && Buffer.byteLength(JSON.stringify(copy)) > MAX_ITEM_BYTES / 2; i++) {
    const longest = fields.reduce((a, b) => (a.get().length >= b.get().length ? a : b))
    const text = longest.get()
    if (text.length < 256) break
    const keep = text.length >> 1
    longest.set(`${text.slice(0, keep)}\n[${text.length - keep} characters were not stored]`)
  }
  return copy
}
