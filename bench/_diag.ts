import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { loadLocalConfig } from '../functions/local/config'
import { startLocalService } from '../functions/local/service'
import { summarize } from './stats'
const key = 'A'.repeat(32)
const config = loadLocalConfig({ ...process.env, PORT: '0', DATA_DIR: mkdtempSync(join(tmpdir(), 'd-')), LOCAL_API_KEY: key, LOCAL_ORGANIZATION_ID: 'org_bench' })
const s = await startLocalService(config, { persist: false, log: () => {} })
const sleep = (t: number) => new Promise((r) => setTimeout(r, t))
async function measure(name: string, f: () => Promise<unknown>, gap = 0) {
  for (let i = 0; i < 20; i++) { await f(); if (gap) await sleep(gap) }
  const xs: number[] = []
  for (let i = 0; i < 100; i++) { const t = performance.now(); await f(); xs.push(performance.now() - t); if (gap) await sleep(gap) }
  const r = summarize(xs); console.log(name, 'gap', gap, r.median.toFixed(2), r.p99.toFixed(2))
}
let n = 0
const pool = () => s.pool.invoke({ version: 1, request_id: `r${n++}`, code: 'print(1+1)' }, 'org_bench')
const lam = () => fetch(`${s.lambdaUrl}/2015-03-31/functions/sandbox/invocations`, { method: 'POST', headers: { 'x-amz-tenant-id': 'org_bench' }, body: JSON.stringify({ version: 1, request_id: `r${n++}`, code: 'print(1+1)' }) }).then((r) => r.text())
const api = () => fetch(`${s.url}/v1/executions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ organization_id: 'org_bench', code: 'print(1+1)' }) }).then((r) => r.text())
console.log(await pool())
for (const gap of [50, 100]) { await measure("pool", pool, gap); await measure("api", api, gap) }
await s.stop()
