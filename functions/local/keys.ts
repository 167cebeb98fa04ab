import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { hashApiKey, newApiKey, newId } from '../core/ids'
import type { KeyStore } from '../core/ports'

/**
 * The local API key: LOCAL_API_KEY when given; otherwise one key is created on the first start,
 * stored only as its hash, and printed that once.
 */
export async function bootstrapLocalKey(options: {
  keys: KeyStore
  dataDir: string
  organizationId: string
  apiKey?: string
  log: (line: string) => void
}): Promise<{ apiKey?: string; created: boolean }> {
  const { keys, organizationId, log } = options
  if (options.apiKey) {
    const hash = hashApiKey(options.apiKey)
    const existing = await keys.findByHash(hash)
    if (existing && existing.organizationId !== organizationId) {
      throw new Error(`LOCAL_API_KEY is already registered for ${existing.organizationId}, not ${organizationId}`)
    }
    if (!existing) await keys.put(hash, { organizationId, keyId: newId('key') })
    return { apiKey: options.apiKey, created: false }
  }
  const marker = join(options.dataDir, 'local-key.json')
  if (existsSync(marker)) {
    const info = JSON.parse(readFileSync(marker, 'utf8')) as { organization_id: string; created_at: string; hash: string }
    if (info.organization_id === organizationId && (await keys.findByHash(info.hash))) {
      log(`API key for ${organizationId}: the one printed on ${info.created_at} (stored hashed; set LOCAL_API_KEY to use your own)`)
      return { created: false }
    }
  }
  const apiKey = newApiKey()
  const hash = hashApiKey(apiKey)
  await keys.put(hash, { organizationId, keyId: newId('key') })
  mkdirSync(options.dataDir, { recursive: true })
  writeFileSync(marker, JSON.stringify({ organization_id: organizationId, created_at: new Date().toISOString(), hash }, null, 2), { mode: 0o600 })
  return { apiKey, created: true }
}
