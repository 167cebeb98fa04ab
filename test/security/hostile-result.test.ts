import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadApiConfig } from '../../functions/config'
import { hashApiKey } from '../../functions/core/ids'
import { createApiHandler } from '../../functions/handlers/app'
import { type ApiDeps, createDeps } from '../../functions/handlers/deps'
import { installLambdaStreamingGlobals, startApiServer } from '../../functions/local/api-gateway'
import { startLocalDynamo } from '../../functions/local/dynamo'
import { LOCAL_BUCKET, S3RVER_CREDENTIALS, startLocalS3 } from '../../functions/local/s3'

// What the API does with a sandbox result written by an attacker who controls the sandbox
// environment: the real API handler, LambdaClient, dynalite and s3rver, and in place of the
// sandbox a Lambda Invoke stand-in that answers whatever the test says. Nothing it returns may
// name a stored object, overwrite another file, or break the session.
const KEY = 'hostile_key_0123456789abcdef'
const ORG = 'org_hostile'
let answer: (payload: any) => unknown = () => ({})
let lastPayload: any
let lambda: Server
let api: Server
let url: string
let deps: ApiDeps
let stops: (() => Promise<unknown>)[] = []

const completed = (extra: Record<string, unknown> = {}) => ({ version: 1, status: 'completed', outputs: [], duration_ms: 1, ...extra })
const execute = async (body: Record<string, unknown>) => {
  const res = await fetch(`${url}/v1/executions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ organization_id: ORG, code: 'x', ...body }),
  })
  return { status: res.status, body: (await res.json()) as any }
}
const newSession = async () =>
  ((await (await fetch(`${url}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${KEY}` } })).json()) as any).id as string

beforeAll(async () => {
  lambda = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      lastPayload = JSON.parse(Buffer.concat(chunks).toString())
      const out = answer(lastPayload)
      const data = Buffer.isBuffer(out) ? out : Buffer.from(JSON.stringify(out))
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(data.length) })
      res.end(data)
    })
  })
  await new Promise<void>((r) => lambda.listen(0, '127.0.0.1', () => r()))
  const dynamo = await startLocalDynamo(undefined, 'hostile')
  const s3 = await startLocalS3(undefined)
  const credentials = { accessKeyId: 'local', secretAccessKey: 'local' }
  deps = createDeps(
    loadApiConfig({ SANDBOX_FUNCTION_NAME: 'sandbox', TABLE_NAME: 'hostile', BUCKET_NAME: LOCAL_BUCKET, PLANS_JSON: undefined, DEFAULT_PLAN: 'enterprise' }),
    {
      lambda: { endpoint: `http://127.0.0.1:${(lambda.address() as AddressInfo).port}`, region: 'us-east-1', credentials, maxAttempts: 1 },
      dynamo: { endpoint: dynamo.endpoint, region: 'us-east-1', credentials },
      s3: { endpoint: s3.endpoint, region: 'us-east-1', credentials: S3RVER_CREDENTIALS, forcePathStyle: true },
      model: null,
    },
    {},
  )
  await deps.store.put(hashApiKey(KEY), { organizationId: ORG, keyId: 'key_1' })
  installLambdaStreamingGlobals()
  api = await startApiServer(createApiHandler(deps) as never, 0, () => {})
  url = `http://127.0.0.1:${(api.address() as AddressInfo).port}`
  stops = [
    () => new Promise((r) => api.close(r)),
    () => new Promise((r) => lambda.close(r)),
    () => new Promise((r) => dynamo.server.close(r)),
    () => s3.stop(),
  ]
})
afterAll(async () => {
  api?.closeAllConnections()
  lambda?.closeAllConnections()
  for (const stop of stops) await stop()
})

describe('a hostile sandbox result', () => {
  it('naming an upload slot it was not given, or one slot twice: 502, nothing stored', async () => {
    answer = () => completed({ outputs: [{ type: 'file', filename: 'a.txt', mime_type: 'text/plain', bytes: 1, slot: 7 }] })
    const unknown = await execute({})
    expect(unknown.status).toBe(502)
    expect(unknown.body.error.code).toBe('sandbox_protocol_error')
    expect(lastPayload.uploads).toHaveLength(4)
    answer = () =>
      completed({
        outputs: [
          { type: 'file', filename: 'a.txt', mime_type: 'text/plain', bytes: 1, slot: 0 },
          { type: 'file', filename: 'b.txt', mime_type: 'text/plain', bytes: 1, slot: 0 },
        ],
      })
    expect((await execute({})).status).toBe(502)
    answer = () => completed({ outputs: [{ type: 'image', mime_type: 'image/png' }] })
    expect((await execute({})).status).toBe(502)
    expect(await deps.store.listFiles(ORG, { limit: 100 })).toEqual([])
  })

  it('breaking the contract or Lambda\'s size: 502, never passed through', async () => {
    answer = () => completed({ outputs: [{ type: 'exec', code: 'rm -rf /' }] })
    expect((await execute({})).body.error.code).toBe('sandbox_protocol_error')
    answer = () => completed({ injected: true })
    expect((await execute({})).body.error.code).toBe('sandbox_protocol_error')
    answer = () => Buffer.from('{"version": 1, "status": "completed", "outputs": [')
    expect((await execute({})).body.error.code).toBe('sandbox_protocol_error')
    answer = () => completed({ outputs: [{ type: 'text', source: 'stdout', text: 'x'.repeat(7 * 1024 * 1024) }] })
    expect((await execute({})).body.error.code).toBe('sandbox_protocol_error')
  })

  it('claiming a slot upload that never arrived: a notice, no file', async () => {
    answer = () => completed({ outputs: [{ type: 'file', filename: 'ghost.csv', mime_type: 'text/csv', bytes: 999, slot: 1 }] })
    const res = await execute({})
    expect(res.status).toBe(200)
    expect(res.body.outputs).toEqual([{ type: 'text', source: 'sandbox', text: '[ghost.csv could not be stored: its upload did not arrive]' }])
  })

  it('lying about a file\'s name or size: stored under an id the API chose, with its real size', async () => {
    answer = () =>
      completed({ outputs: [{ type: 'file', filename: '../../files/org_other/file_x', mime_type: 'text/html', bytes: 1_000_000, data: Buffer.from('hi').toString('base64') }] })
    const res = await execute({})
    const out = res.body.outputs[0]
    expect(out).toMatchObject({ type: 'file', filename: '../../files/org_other/file_x', bytes: 2 })
    const stored = (await deps.store.getFile(ORG, out.file_id))!
    expect(stored.key).toBe(`files/${ORG}/${out.file_id}`)
    // A later block gets it under a name without a path.
    answer = (p) => completed({ outputs: [{ type: 'text', source: 'stdout', text: JSON.stringify(p.files.map((f: any) => f.name)) }] })
    expect((await execute({ file_ids: [out.file_id] })).body.outputs[0].text).toBe('["__.._files_org_other_file_x"]')
  })

  it('referring to a state part it was not given: the session keeps its state, with a notice', async () => {
    const session = await newSession()
    const part = { sha256: 'a'.repeat(64), bytes: 3, data: Buffer.from('abc').toString('base64') }
    answer = () => completed({ state: { parts: [part] } })
    await execute({ session_id: session })
    const before = (await deps.store.getSession(ORG, session))!.state
    expect(before).toEqual({ parts: [part] })
    answer = () => completed({ state: { parts: [{ sha256: 'b'.repeat(64), bytes: 10 }] } })
    const res = await execute({ session_id: session })
    expect(res.body.outputs.at(-1).text).toContain('was not kept')
    expect((await deps.store.getSession(ORG, session))!.state).toEqual(before)
    // The next block still gets the good state.
    answer = (p) => completed({ outputs: [{ type: 'text', source: 'stdout', text: p.state.parts[0].sha256 }] })
    expect((await execute({ session_id: session })).body.outputs[0].text).toBe('a'.repeat(64))
  })
})
