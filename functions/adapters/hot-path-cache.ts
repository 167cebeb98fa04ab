import type { ApiKeyRecord, KeyStore } from '../core/ports'
import type { Organization, OrganizationStore, UsageMeter } from '../core/stores'

interface Backing extends KeyStore, OrganizationStore {
  tryReserveExecutions(organizationId: string, count: number, limitPerDay: number, now: Date): Promise<boolean>
}

/**
 * What every request reads, kept in memory for a short time: the API key lookup and the
 * organization's plan (a revoked key or a plan change takes effect within `ttlMs`), and the
 * daily execution count, reserved from the table in batches (each warm instance may leave up
 * to `batch - 1` of a day's blocks unused; near the limit it reserves one at a time).
 */
export class HotPathCache implements KeyStore, OrganizationStore, UsageMeter {
  private keys = new Map<string, { value: ApiKeyRecord; until: number }>()
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
