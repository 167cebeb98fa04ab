import { LambdaClient } from '@aws-sdk/client-lambda'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { LambdaBackground } from '../../functions/adapters/lambda-background'
import { LambdaSandbox } from '../../functions/adapters/lambda-sandbox'
import { jobKey } from '../../functions/core/background'
import { ScriptedModel } from '../../functions/adapters/models/scripted'
import type { ModelProvider } from '../../functions/core/model'
import { createSandboxLambdaClient } from '../../functions/handlers/deps'
import { startTestService, TEST_KEY } from '../support/local'
import { startOwnApi } from '../support/own-api'

// Background runs as deployed: the API dispatches each run with an asynchronous Invoke through
// the real LambdaClient, and the worker handler runs it, over the real stores (dynalite, s3rver)
// and the real sandbox (the local Lambda endpoint).
//
// The local Lambda endpoint (functions/local/lambda-endpoint.ts) serves only the sandbox, and
// only RequestResponse: an Event invoke gets 400 InvalidParameterValueException ("Invocation type
// Event is not supported locally"), so it has no 1 MB limit to enforce. The dispatch-failure test
// uses it as it is; for the rest a stand-in speaks Lambda's asynchronous Invoke: 202 for an Event
// payload of at most 1,048,576 bytes, then runs the worker (later, like Lambda's queue, and as
// many times as told: Lambda may deliver an event more than once); 413
// RequestEntityTooLargeException past it, with Lambda's message.

const ASYNC_LIMIT_BYTES = 1_048_576

interface Delivery {
  bytes: number
  event?: unknown
  results: unknown[]
}

async function startAsyncInvokeStandIn(deliveriesPerEvent: () => number) {
  const received: Delivery[] = []
  let run: (event: unknown) => Promise<unknown> = async () => undefined
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const body = Buffer.concat(chunks)
    const error = (status: number, type: string, message: string) => {
      res.writeHead(status, { 'content-type': 'application/json', 'x-amzn-errortype': type })
      res.end(JSON.stringify({ Type: 'User', message }))
    }
    if (!/^\/2015-03-31\/functions\/worker\/invocations/.test(req.url ?? '')) return error(404, 'ResourceNotFoundException', 'Function not found')
    if (req.headers['x-amz-invocation-type'] !== 'Event') return error(400, 'InvalidParameterValueException', 'only Event here')
    const delivery: Delivery = { bytes: body.length, results: [] }
    received.push(delivery)
    if (body.length > ASYNC_LIMIT_BYTES) {
      return error(413, 'RequestEntityTooLargeException', `${body.length} byte payload is too large for the Event invocation type (limit ${ASYNC_LIMIT_BYTES} bytes)`)
    }
    delivery.event = JSON.parse(body.toString('utf8'))
    res.writeHead(202, { 'x-amzn-requestid': 'stand-in' })
    res.end()
    const times = deliveriesPerEvent()
    setTimeout(async () => {
      for (let i = 0; i < times; i++) delivery.results.push(await run(delivery.event).catch((e: Error) => ({ error: e.message })))
    }, 20)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    setWorker(fn: typeof run) {
      run = fn
    },
    async close() {
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}

const CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' }
let ctx: Awaited<ReturnType<typeof startTestService>>
let standIn: Awaited<ReturnType<typeof startAsyncInvokeStandIn>>
let own: Awaited<ReturnType<typeof startOwnApi>>
/** The same, dispatching to the real local Lambda endpoint, which refuses Event invokes. */
let refusing: Awaited<ReturnType<typeof startOwnApi>>
let deliveries = 1
let modelCalls = 0
let worker: (event: unknown) => Promise<unknown>

const scripted = new ScriptedModel({ script: join(import.meta.dirname, '..', 'fixtures', 'scripted', 'compound-interest.json') })
const model: ModelProvider = {
  name: 'scripted',
  defaultModel: scripted.defaultModel,
  converse: (request) => {
    modelCalls += 1
    return scripted.converse(request)
  },
}

async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  return { status: res.status, body: (await res.json()) as any }
}

async function poll(base: string, id: string, until: (r: any) => boolean, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const res = await call(base, 'GET', `/v1/responses/${id}`)
    if (until(res.body) || Date.now() > deadline) return res.body
    await new Promise((r) => setTimeout(r, 100))
  }
}

beforeAll(async () => {
  ctx = await startTestService({ SANDBOX_SLOT_UID_BASE: '66500', SANDBOX_WORKERS: '1' })
  const sandbox = new LambdaSandbox({
    client: createSandboxLambdaClient(30_000, { endpoint: ctx.service.lambdaUrl, region: 'us-east-1', credentials: CREDENTIALS }),
    functionName: 'sandbox',
    tenantIsolation: true,
  })
  standIn = await startAsyncInvokeStandIn(() => deliveries)
  const toStandIn = new LambdaClient({ endpoint: standIn.url, region: 'us-east-1', credentials: CREDENTIALS, maxAttempts: 1 })
  own = await startOwnApi(ctx.service, { sandbox, model, background: new LambdaBackground(toStandIn, 'worker') })
  // The module builds its deployed deps at import, from the function's environment.
  vi.stubEnv('SANDBOX_FUNCTION_NAME', 'sandbox')
  vi.stubEnv('TABLE_NAME', 'interpreter')
  vi.stubEnv('BUCKET_NAME', 'interpreter-local')
  const { createWorkerHandler } = await import('../../functions/handlers/worker')
  vi.unstubAllEnvs()
  worker = createWorkerHandler(own.deps)
  standIn.setWorker(worker)
  const toLocalEndpoint = new LambdaClient({ endpoint: ctx.service.lambdaUrl, region: 'us-east-1', credentials: CREDENTIALS, maxAttempts: 1 })
  refusing = await startOwnApi(ctx.service, { sandbox, model, background: new LambdaBackground(toLocalEndpoint, 'sandbox') })
})
afterAll(async () => {
  await own?.stop()
  await refusing?.stop()
  await standIn?.close()
  await ctx?.stop()
})

const assistant = async (base: string) =>
  (await call(base, 'POST', '/v1/assistants', { name: 'Analyst', tools: [{ type: 'code_interpreter' }] })).body.id as string

describe('background dispatch', () => {
  it('a request over the 1 MB asynchronous limit is stored and passed by id, and runs to the end', async () => {
    const inputs = [
      ...Array.from({ length: 5 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: `${i}`.padEnd(200_000, '.') })),
      { role: 'user', content: 'What is the compound interest on $10,000 at 7% for 20 years?'.padEnd(60_000, ' ') },
    ]
    const body = { assistant_id: await assistant(own.url), background: true, inputs }
    expect(JSON.stringify(body).length).toBeGreaterThan(ASYNC_LIMIT_BYTES)
    const res = await call(own.url, 'POST', '/v1/responses', body)
    expect(res.status).toBe(202)
    expect(res.body).toMatchObject({ object: 'response', status: 'queued' })
    // The invoke carried ids only.
    const delivery = standIn.received.at(-1)!
    expect(delivery.bytes).toBeLessThan(1024)
    expect(delivery.event).toEqual({ organizationId: 'org_test', responseId: res.body.id })
    const done = await poll(own.url, res.body.id, (r) => !['queued', 'in_progress'].includes(r.status))
    expect(done.status).toBe('completed')
    expect(done.output[0].outputs).toEqual([{ type: 'text', source: 'stdout', text: '$38,696.84' }])
    // The stored job is gone once the run has ended.
    for (let i = 0; i < 40 && (await ctx.service.blobs.head(jobKey('org_test', res.body.id))); i++) await new Promise((r) => setTimeout(r, 50))
    expect(await ctx.service.blobs.head(jobKey('org_test', res.body.id))).toBeUndefined()
    // The run's session is free again.
    const next = await call(own.url, 'POST', '/v1/executions', { organization_id: 'org_test', code: 'print(1)', session_id: done.session_id })
    expect(next.status).toBe(200)
  })

  it('an event delivered twice runs once', async () => {
    deliveries = 2
    try {
      const before = modelCalls
      const res = await call(own.url, 'POST', '/v1/responses', {
        assistant_id: await assistant(own.url),
        background: true,
        inputs: [{ role: 'user', content: 'What is the compound interest on $10,000 at 7% for 20 years?' }],
      })
      expect(res.status).toBe(202)
      const delivery = standIn.received.at(-1)!
      const done = await poll(own.url, res.body.id, (r) => r.status === 'completed')
      for (let i = 0; i < 100 && delivery.results.length < 2; i++) await new Promise((r) => setTimeout(r, 50))
      expect(delivery.results).toHaveLength(2)
      expect(done.usage.code_blocks).toBe(1)
      expect(modelCalls - before).toBe(2) // one tool call, one answer: a single run
      expect(delivery.results).toContainEqual({ response_id: res.body.id, status: 'skipped' })
    } finally {
      deliveries = 1
    }
  })

  it('a worker that cannot load the job ends the run failed and releases its session', async () => {
    deliveries = 0 // queued by "Lambda", delivered below by hand
    let res
    try {
      const session = await call(own.url, 'POST', '/v1/sessions')
      res = await call(own.url, 'POST', '/v1/responses', {
        assistant_id: await assistant(own.url),
        background: true,
        session_id: session.body.id,
        inputs: [{ role: 'user', content: 'What is the compound interest on $10,000 at 7% for 20 years?' }],
      })
      expect(res.status).toBe(202)
      expect((await call(own.url, 'POST', '/v1/executions', { organization_id: 'org_test', code: '1', session_id: session.body.id })).status).toBe(409)
      await ctx.service.blobs.delete([jobKey('org_test', res.body.id)])
      expect(await worker({ organizationId: 'org_test', responseId: res.body.id })).toEqual({ response_id: res.body.id, status: 'failed' })
      const stored = await call(own.url, 'GET', `/v1/responses/${res.body.id}`)
      expect(stored.body.status).toBe('failed')
      expect(stored.body.error.message).toMatch(/could not be loaded: its stored request is missing/)
      expect((await call(own.url, 'POST', '/v1/executions', { organization_id: 'org_test', code: '1', session_id: session.body.id })).status).toBe(200)
    } finally {
      deliveries = 1
    }
  })

  it('a dispatch that fails ends the run failed and releases its session (the local endpoint refuses Event invokes)', async () => {
    const session = await call(refusing.url, 'POST', '/v1/sessions')
    const key = `dispatch-${Date.now()}`
    const body = {
      assistant_id: await assistant(refusing.url),
      background: true,
      session_id: session.body.id,
      inputs: [{ role: 'user', content: 'What is the compound interest on $10,000 at 7% for 20 years?' }],
    }
    const res = await call(refusing.url, 'POST', '/v1/responses', body, { 'idempotency-key': key })
    expect(res.status).toBe(503)
    expect(res.body.error.code).toBe('background_not_available')
    expect(res.body.error.message).toMatch(/could not be started/)
    expect(res.body.error.message).toMatch(/Invocation type Event is not supported locally/)
    // The run is stored failed (a retry with the same key gets it), never left queued.
    const again = await call(refusing.url, 'POST', '/v1/responses', body, { 'idempotency-key': key })
    expect(again.status).toBe(200)
    expect(again.body).toMatchObject({ status: 'failed', session_id: session.body.id, error: { code: 'background_not_available' } })
    expect(res.body.error.message).toContain(again.body.id)
    expect(await ctx.service.blobs.head(jobKey('org_test', again.body.id))).toBeUndefined()
    // Its session is not held: the next request may use it at once.
    const next = await call(refusing.url, 'POST', '/v1/executions', { organization_id: 'org_test', code: 'print(2)', session_id: session.body.id })
    expect(next.status).toBe(200)
  })
})
