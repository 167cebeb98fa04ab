import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { loadLocalConfig } from '../../functions/local/config'
import { startLocalService } from '../../functions/local/service'
import { api } from '../support/local'

const dataDir = mkdtempSync(join(tmpdir(), 'sci-admin-'))
const admin = (...args: string[]) =>
  execFileSync(process.execPath, ['--import', 'tsx', 'bin/admin.ts', ...args], {
    env: { ...process.env, DATA_DIR: dataDir, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  })
// While the server runs in this process, the command must not block its event loop.
const adminAsync = async (...args: string[]) =>
  (
    await promisify(execFile)(process.execPath, ['--import', 'tsx', 'bin/admin.ts', ...args], {
      env: { ...process.env, DATA_DIR: dataDir, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
      encoding: 'utf8',
    })
  ).stdout
afterAll(() => rmSync(dataDir, { recursive: true, force: true }))

it('creates an organization, issues a key that works, and revokes it while the server runs', async () => {
  expect(admin('org', 'create', 'org_acme', '--plan', 'standard')).toContain('created org_acme on plan standard')
  const issued = admin('key', 'issue', 'org_acme')
  const key = issued.match(/\n\s+(sk_[A-Za-z0-9_-]+)\n/)![1]!
  const keyId = issued.match(/issued (key_[A-Za-z0-9_-]+)/)![1]!
  expect(() => admin('org', 'set-plan', 'org_acme', 'platinum')).toThrow(/unknown plan "platinum"/)

  // The data survives into the server (dynalite persisted under DATA_DIR).
  const service = await startLocalService(
    loadLocalConfig({ PORT: '0', DATA_DIR: dataDir, SANDBOX_WORKERS: '1', SANDBOX_SLOT_UID_BASE: '62600', KEY_CACHE_TTL_MS: '0', PYTHON: '/usr/bin/python3' }),
    { log: () => {}, model: null, modelEnv: {} },
  )
  try {
    const auth = { authorization: `Bearer ${key}` }
    const ok = await api(service, 'POST', '/v1/executions', { organization_id: 'org_acme', code: 'print(6 * 7)' }, auth)
    expect(ok.body.outputs).toEqual([{ type: 'text', source: 'stdout', text: '42' }])
    // While the server holds the store, the admin command goes through its endpoint.
    expect(await adminAsync('key', 'revoke', 'org_acme', keyId)).toContain(`revoked ${keyId}`)
    const refused = await api(service, 'POST', '/v1/executions', { organization_id: 'org_acme', code: '1' }, auth)
    expect(refused.status).toBe(401)
    expect(JSON.parse(await adminAsync('org', 'show', 'org_acme')).keys[0].revokedAt).toBeTruthy()
  } finally {
    await service.stop()
  }
})
