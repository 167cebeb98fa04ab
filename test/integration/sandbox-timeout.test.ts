import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LambdaSandbox } from '../../functions/adapters/lambda-sandbox'
import { sandboxInvokeTimeoutMs } from '../../functions/config'
import { createSandboxLambdaClient } from '../../functions/handlers/deps'
import { startTestService, TEST_KEY } from '../support/local'
import { startOwnApi } from '../support/own-api'

// A sandbox invoke that outlives the client's timeout: the real LambdaClient against the local
// Lambda endpoint (through a proxy that counts the invokes reaching it), the real stores. A
// retry would run the same block twice and move the session's state twice.

/** Forwards every Invoke to the local endpoint and records each block's request_id. */
async function startCountingProxy(target: string): Promise<{ url: string; seen: string[]; server: Server }> {
  const seen: string[] = []
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const body = Buffer.concat(chunks)
    try {
      seen.push(String(JSON.parse(body.toString('utf8')).request_id))
    } catch {
      seen.push('(not json)')
    }
    const headers: Record<string, string> = {}
    for (const [k, v] of Object.entries(req.headers)) if (/^(x-amz-|content-type$|authorization$)/.test(k)) headers[k] = String(v)
    try {
      const answer = await fetch(target + req.url, { method: req.method, headers, body })
      const out = Buffer.from(await answer.arrayBuffer())
      const forward: Record<string, string> = {}
      answer.headers.forEach((v, k) => {
        if (/^(x-amz|content-type$)/.test(k)) forward[k] = v
      })
      res.writeHead(answer.status, forward)
      res.end(out)
    } catch {
      res.destroy() // the client gave up meanwhile
    }
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, server }
}

let ctx: Awaited<ReturnType<typeof startTestService>>
let proxy: Awaited<ReturnType<typeof startCountingProxy>>
let own: Awaited<ReturnType<typeof startOwnApi>>
/** The client's whole-invoke timeout in this test: far below the 4 s block below. */
const INVOKE_TIMEOUT_MS = 1_500

const call = async (path: string, body?: unknown) => {
  const res = await fetch(own.url + path, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  return { status: res.status, body: (await res.json()) as any }
}
const execute = (code: string, session_id: string) => call('/v1/executions', { organization_id: 'org_test', code, session_id })

beforeAll(async () => {
  ctx = await startTestService({ SANDBOX_SLOT_UID_BASE: '66700', SANDBOX_WORKERS: '2', CODE_TIMEOUT_MS: '10000' })
  proxy = await startCountingProxy(ctx.service.lambdaUrl)
  const client = createSandboxLambdaClient(
    10_000,
    { endpoint: proxy.url, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } },
    INVOKE_TIMEOUT_MS,
  )
  const sandbox = new LambdaSandbox({ client, functionName: 'sandbox', tenantIsolation: true, invokeTimeoutMs: INVOKE_TIMEOUT_MS })
  own = await startOwnApi(ctx.service, { sandbox, env: { CODE_TIMEOUT_MS: '10000' } })
})
afterAll(async () => {
  await own?.stop()
  proxy?.server.closeAllConnections()
  proxy?.server.close()
  await ctx?.stop()
})

describe('a sandbox invoke that times out', () => {
  it('runs the block once, answers 503 sandbox_unavailable at the timeout, and the session keeps its state from before it', async () => {
    const session = await call('/v1/sessions')
    expect(session.status).toBe(200)
    const first = await execute('n = 1', session.body.id)
    expect(first.status).toBe(200)

    const before = proxy.seen.length
    const started = Date.now()
    const slow = await execute('import time\nn += 1\ntime.sleep(4)\nprint(n)', session.body.id)
    const waited = Date.now() - started
    expect(slow.status).toBe(503)
    expect(slow.body.error.code).toBe('sandbox_unavailable')
    expect(slow.body.error.message).toMatch(/did not answer within 1\.5 s/)
    expect(slow.body.error.message).toMatch(/not run again/)
    // Answered at the client's timeout, not when the block ended.
    expect(waited).toBeLessThan(3_500)

    // Long enough for the block to end and for any retry to have reached the endpoint and run.
    await new Promise((r) => setTimeout(r, 6_000))
    const invokes = proxy.seen.slice(before)
    expect(invokes).toHaveLength(1)
    expect(invokes[0]).toMatch(/^exec_/)

    // The session was released and holds the state from before the timed-out block: n == 1.
    const after = await execute('print(n)', session.body.id)
    expect(after.status).toBe(200)
    expect(after.body.outputs[0].text.trim()).toBe('1')
  })

  it('gives the client a timeout that covers a cold start plus the sandbox function\'s own timeout', () => {
    // 30 s block + 10 s sandbox margin (lib/config.ts) + 10 s init phase + 5 s on the wire.
    expect(sandboxInvokeTimeoutMs(30_000)).toBe(55_000)
    expect(sandboxInvokeTimeoutMs(1_500)).toBe(27_000)
  })
})
