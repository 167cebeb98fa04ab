import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadLocalConfig } from '../../functions/local/config'
import { type LocalService, startLocalService } from '../../functions/local/service'
import { execute } from '../support/local'

// DATA_DIR holds every organization's objects and table: a block, under another uid on the same
// host, must not list or read it (found by a review: it was 0755 with 0644 files).
const dataDir = mkdtempSync(join(tmpdir(), 'data-dir-test-'))
chmodSync(dataDir, 0o755) // as a checkout's .data would be: only DATA_DIR's own mode protects it
let service: LocalService

describe.skipIf(process.getuid?.() !== 0)('DATA_DIR of a persisted local server (needs root)', () => {
  beforeAll(async () => {
    const config = loadLocalConfig({
      PORT: '0',
      DATA_DIR: join(dataDir, 'data'),
      LOCAL_API_KEY: 'test_key_0123456789abcdefABCDEF',
      LOCAL_ORGANIZATION_ID: 'org_test',
      SANDBOX_WORKERS: '1',
      SANDBOX_SLOT_UID_BASE: '65600',
      PYTHON: '/usr/bin/python3',
    })
    service = await startLocalService(config, { persist: true, log: () => {}, model: null })
  })
  afterAll(async () => {
    await service?.stop()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('keeps the stores readable by the server only', () => {
    const root = join(dataDir, 'data')
    expect(statSync(root).mode & 0o777).toBe(0o711)
    for (const entry of readdirSync(root, { withFileTypes: true })) {
      expect([entry.name, statSync(join(root, entry.name)).mode & 0o077]).toEqual([entry.name, 0])
    }
  })

  it('refuses a block that reads it', async () => {
    const root = join(dataDir, 'data')
    const res = await execute(service, `import os\nfor p in (${JSON.stringify(root)}, ${JSON.stringify(join(root, 's3'))}):\n    try:\n        print(os.listdir(p))\n    except OSError as e:\n        print(type(e).__name__)`)
    expect(res.body.outputs[0].text).toBe('PermissionError\nPermissionError')
  })
})
