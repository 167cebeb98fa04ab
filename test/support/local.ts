import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadLocalConfig } from '../../functions/local/config'
import type { ModelProvider } from '../../functions/core/model'
import { type LocalService, startLocalService } from '../../functions/local/service'

export const TEST_KEY = 'test_key_0123456789abcdefABCDEF'

/**
 * Starts the whole local service (HTTP API, local Lambda endpoint, real Python workers, dynalite).
 * Each test file passes its own slot uid base: files run in parallel and a slot's uid must never
 * be shared (cleanup kills every process of it).
 */
export async function startTestService(
  env: Record<string, string> & { SANDBOX_SLOT_UID_BASE: string },
  options: { model?: ModelProvider | null } = {},
) {
  const dataDir = mkdtempSync(join(tmpdir(), 'sci-test-'))
  const lines: string[] = []
  const service = await startLocalService(
    loadLocalConfig({
      PORT: '0',
      DATA_DIR: dataDir,
      LOCAL_API_KEY: TEST_KEY,
      LOCAL_ORGANIZATION_ID: 'org_test',
      SANDBOX_WORKERS: '2',
      PYTHON: process.env.PYTHON ?? '/usr/bin/python3',
      ...env,
    }),
    { persist: false, log: (line) => lines.push(line), model: options.model ?? null, modelEnv: {} },
  )
  return {
    service,
    lines,
    async stop() {
      await service.stop()
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

export async function api(
  service: LocalService,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = { authorization: `Bearer ${TEST_KEY}` },
): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(service.url + path, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  })
  const text = await res.text()
  let parsed: unknown = text
  try {
    parsed = JSON.parse(text)
  } catch {
    /* not JSON */
  }
  return { status: res.status, body: parsed, headers: res.headers }
}

export const execute = (service: LocalService, code: string, extra: Record<string, unknown> = {}, org = 'org_test') =>
  api(service, 'POST', '/v1/executions', { organization_id: org, code, ...extra })

/** Runs `code` until the service answers 200 (a replaced worker may still be starting): every 0.5 s, up to 30 s. */
export async function executeOnceBack(service: LocalService, code: string) {
  let res = await execute(service, code)
  for (let i = 0; i < 60 && res.status !== 200; i++) {
    await new Promise((r) => setTimeout(r, 500))
    res = await execute(service, code)
  }
  return res
}
