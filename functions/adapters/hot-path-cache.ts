import type { ApiKeyRecord, KeyStore } from '../core/ports'
import type { Assistant } from '../contract/responses'
import type { AssistantStore, Organization, OrganizationStore, UsageMeter } from '../core/stores'

interface Backing extends KeyStore, OrganizationStore, AssistantStore {
  tryReserveExecutions(organizationId: string, count: number, limitPerDay: number, now: Date): Promise<boolean>
}

/**
 * What every request reads, kept in memory for a short time: the API key lookup, the
 * organization's plan and the assistant (a revoked key, a plan change or an assistant changed
 * through another instance takes effect within `ttlMs`), and the
 * daily execution count, reserved from the table in batches (each warm instance may leave up
 * to `batch - 1` of a day's blocks unused; near the limit it reserves one at a time).
 */
export class HotPathCache implements KeyStore, OrganizationStore, AssistantStore, UsageMeter {
  private keys = new Map<string, { value: ApiKeyRecord; until: number }>()
  private assistants = new Map<string, { value: Assistant | undefined; until: number }>()
  private orgs = new Map<string, { value: Organization | undefined; until: number }>()
  private reserved = new Map<string, number>()

  constructor(
    private readonly store: Backing,
    private readonly ttlMs: number,
    private readonly batch: number,
  ) {}

  async findByHash(hash: string): Promise<ApiKeyRecord | undefined> {
    const hit = this.keys.get(hash)
    if (hit && hit.until > Date.now()) return hit.value
    const value = await this.store.findByHash(hash)
    // Only known keys are kept: an unknown key is looked up every time.
    if (value && this.ttlMs > 0) this.remember(this.keys, hash, value)
    return value
  }

  put(hash: string, record: ApiKeyRecord): Promise<void> {
    return this.store.put(hash, record)
  }

  async getOrganization(id: string): Promise<Organization | undefined> {
    const hit = this.orgs.get(id)
    if (hit && hit.until > Date.now()) return hit.value
    const value = await this.store.getOrganization(id)
    if (this.ttlMs > 0) this.remember(this.orgs, id, value)
    return value
  }

  async putOrganization(org: Organization): Promise<void> {
    this.orgs.delete(org.id)
    await this.store.putOrganization(org)
  }

  // Assistants are read on every response; a change made through another instance shows
  // within ttlMs, one made through this instance at once.
  async getAssistant(organizationId: string, id: string): Promise<Assistant | undefined> {
    const key = `${organizationId}#${id}`
    const hit = this.assistants.get(key)
    if (hit && hit.until > Date.now()) return hit.value
    const value = await this.store.getAssistant(organizationId, id)
    if (value && this.ttlMs > 0) this.remember(this.assistants, key, value)
    return value
  }

  async putAssistant(assistant: Assistant): Promise<void> {
    this.assistants.delete(`${assistant.organization_id}#${assistant.id}`)
    await this.store.putAssistant(assistant)
  }

  listAssistants(organizationId: string, limit: number, after?: string): Promise<Assistant[]> {
    return this.store.listAssistants(organizationId, limit, after)
  }

  async deleteAssistant(organizationId: string, id: string): Promise<boolean> {
    this.assistants.delete(`${organizationId}#${id}`)
    return this.store.deleteAssistant(organizationId, id)
  }

  async tryConsumeExecution(organizationId: string, limitPerDay: number, now: Date): Promise<boolean> {
    const key = `${organizationId}#${now.toISOString().slice(0, 10)}`
    const left = this.reserved.get(key) ?? 0
    if (left > 0) {
      this.reserved.set(key, left - 1)
      return true
    }
    if (this.batch > 1 && (await this.store.tryReserveExecutions(organizationId, this.batch, limitPerDay, now))) {
      this.reserved.set(key, this.batch - 1)
      return true
    }
    return this.store.tryReserveExecutions(organizationId, 1, limitPerDay, now)
  }

  private remember<V>(map: Map<string, { value: V; until: number }>, key: string, value: V) {
    if (map.size > 10_000) map.clear()
    map.set(key, { value, until: Date.now() + this.ttlMs })
  }
}
