import { mkdtempSync } from 'node:fs'
import { loadLocalConfig } from '../functions/local/config'
import { startLocalService } from '../functions/local/service'
const svc = await startLocalService(loadLocalConfig({ PORT: '0', DATA_DIR: mkdtempSync('/tmp/diag-'), LOCAL_API_KEY: 'diag_key_0123456789abcdefghij', LOCAL_ORGANIZATION_ID: 'org_diag', SANDBOX_SLOT_UID_BASE: '64500', PYTHON: '/usr/bin/python3', SANDBOX_WORKERS: process.env.W ?? '2' }), { persist: false, log: () => {}, model: null, modelEnv: {} })
const payload = { version: 1, request_id: 'x', code: 'print(1+1)' }
const med = (a: number[]) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)]!.toFixed(2)
for (const pause of [0, 30]) {
  const rows: any[] = []
  for (let i = 0; i < 80; i++) {
    const t = performance.now()
    const r: any = await svc.pool.invoke(payload, 'org_diag')
    rows.push({ e2e: performance.now() - t, ...r.result.timings })
    if (pause) await new Promise((res) => setTimeout(res, pause))
  }
  const s = rows.slice(10)
  console.log(`pause ${pause}: e2e ${med(s.map((r) => r.e2e))} wait ${med(s.map((r) => r.wait_ms))} run ${med(s.map((r) => r.run_ms))} total ${med(s.map((r) => r.total_ms))}`, svc.pool.stats())
}
await svc.stop()
process.exit(0)
