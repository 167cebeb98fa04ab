import { readdirSync, readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, execute, executeOnceBack, startTestService, TEST_KEY } from '../support/local'

// SANDBOX_POSTURE=lambda: every worker is an emulated Lambda environment
// (python-runtime/emulation/lambda_env.py) whose runtime client polls the worker's own Runtime
// API server, so a block goes HTTP -> API -> LambdaClient -> local Lambda endpoint -> Runtime API
// (GET /next) -> runtime_client.py -> sandbox.runner.handler -> POST .../response and back.
const WORKER_UID_BASE = 65300

function processesOf(uid: number): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        return new RegExp(`^Uid:\\s+${uid}\\s`, 'm').test(readFileSync(`/proc/${e}/status`, 'utf8'))
      } catch {
        return false
      }
    })
    .map(Number)
}
let ctx: Awaited<ReturnType<typeof startTestService>>

describe.skipIf(process.getuid?.() !== 0)('the lambda posture (needs root)', () => {
  beforeAll(async () => {
    ctx = await startTestService({
      SANDBOX_POSTURE: 'lambda',
      SANDBOX_SLOT_UID_BASE: '65200',
      SANDBOX_WORKER_UID_BASE: String(WORKER_UID_BASE),
      SANDBOX_WORKERS: '1',
      CODE_TIMEOUT_MS: '5000',
    })
  })
  afterAll(async () => ctx?.stop())

  it('runs print(1+1) end to end', async () => {
    const res = await execute(ctx.service, 'print(1+1)')
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ status: 'completed', outputs: [{ type: 'text', source: 'stdout', text: '2' }] })
  })

  it('fetches a large input by its presigned URL and returns a large output through an upload slot, through the S3 gate', async () => {
    const big = 'x'.repeat(3 * 1024 * 1024)
    const fd = new FormData()
    fd.append('purpose', 'assistants')
    fd.append('file', new Blob([big], { type: 'text/plain' }), 'big.txt')
    const up = await fetch(`${ctx.service.url}/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${TEST_KEY}` }, body: fd })
    const file = (await up.json()) as { id: string }
    const res = await execute(ctx.service, "data = open('big.txt').read()\nprint(len(data))\nopen('out.bin', 'wb').write(b'y' * (4 << 20))", { file_ids: [file.id] })
    expect(res.body.status).toBe('completed')
    expect(res.body.outputs[0]).toEqual({ type: 'text', source: 'stdout', text: String(big.length) })
    const out = res.body.outputs.find((o: any) => o.type === 'file' && o.filename === 'out.bin')
    expect(out?.bytes).toBe(4 << 20)
    const got = await fetch(`${ctx.service.url}/v1/files/${out.file_id}/content`, { headers: { authorization: `Bearer ${TEST_KEY}` } })
    expect((await got.arrayBuffer()).byteLength).toBe(4 << 20)
  })

  it('runs each worker as the runtime client under its Runtime API, as its own uid', () => {
    expect(ctx.service.posture).toBe('lambda')
    expect(ctx.service.layers.posture).toBe('lambda')
    const [pid] = ctx.service.pool.workerPids()
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    expect(cmdline.some((arg) => arg.endsWith('emulation/runtime_client.py'))).toBe(true)
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    expect(status).toMatch(new RegExp(`^Uid:\\s+${WORKER_UID_BASE}\\s`, 'm'))
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')
    expect(environ.find((v) => v.startsWith('AWS_LAMBDA_RUNTIME_API='))).toMatch(/^AWS_LAMBDA_RUNTIME_API=127\.0\.0\.1:\d+$/)
    expect(environ).toContain('_HANDLER=sandbox.runner.handler')
  })

  it('reports the layers and the refused ones on the authenticated health endpoint', async () => {
    const res = await api(ctx.service, 'GET', '/v1/health')
    expect(res.status).toBe(200)
    expect(res.body.sandbox.layers.posture).toBe('lambda')
    expect(res.body.sandbox.refused).toEqual(ctx.service.refused)
    for (const name of Object.keys(ctx.service.refused)) expect(ctx.service.layers[name]).toBe(false)
  })

  it('answers Runtime.ExitError when the environment dies mid-block, then starts a fresh one', async () => {
    const pending = execute(ctx.service, 'import time\ntime.sleep(3)')
    await new Promise((r) => setTimeout(r, 500))
    const [pid] = ctx.service.pool.workerPids()
    const environment = processesOf(WORKER_UID_BASE)
    expect(environment.length).toBeGreaterThan(2) // runner, zygote, the block, standbys
    process.kill(pid!, 'SIGKILL')
    const res = await pending
    expect(res.status).toBe(503)
    expect(res.body.error.code).toBe('sandbox_unavailable')
    expect(res.body.error.message).toContain('Runtime.ExitError')
    // Nothing of the old environment's uid survives it (its zygote has no parent-death signal).
    const after = await executeOnceBack(ctx.service, "print('back')")
    expect(after.body.outputs[0].text).toBe('back')
    expect(ctx.service.pool.workerPids()).not.toContain(pid)
    const alive = new Set(processesOf(WORKER_UID_BASE))
    expect(environment.filter((p) => alive.has(p))).toEqual([])
  })
})
