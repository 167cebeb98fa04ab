import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MAX_CODE_CHARS } from '../../functions/contract/sandbox'
import { api, execute, startTestService, TEST_KEY } from '../support/local'

// Through every layer: HTTP -> API handler (middy) -> real LambdaClient -> local Lambda
// endpoint -> Python worker (runner -> zygote -> child) and back.
let ctx: Awaited<ReturnType<typeof startTestService>>
const SERVER_SECRET = 'server-secret-4b1d9e0c'

beforeAll(async () => {
  process.env.PROVIDER_API_KEY_FOR_TEST = SERVER_SECRET
  ctx = await startTestService({ SANDBOX_SLOT_UID_BASE: '62100', CODE_TIMEOUT_MS: '5000' })
})
afterAll(async () => {
  delete process.env.PROVIDER_API_KEY_FOR_TEST
  await ctx?.stop()
})

describe('POST /v1/executions', () => {
  it('runs the compound-interest example of the product brief', async () => {
    const code = "principal = 10000\nrate = 0.07\nyears = 20\nresult = principal * (1 + rate) ** years\nprint(f'${result:,.2f}')"
    const res = await execute(ctx.service, code)
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ object: 'execution', status: 'completed', code, organization_id: 'org_test' })
    expect(res.body.id).toMatch(/^exec_[A-Za-z0-9_-]{24}$/)
    expect(res.body.outputs).toEqual([{ type: 'text', source: 'stdout', text: '$38,696.84' }])
    expect(res.body.duration_ms).toBeGreaterThan(0)
  })

  it('shows the final expression and returns figures as PNG images in order', async () => {
    const res = await execute(ctx.service, "import matplotlib.pyplot as plt\nprint('chart')\nplt.plot([1, 3, 2])\nplt.show()\n6 * 7")
    expect(res.body.status).toBe('completed')
    const [text, image, value] = res.body.outputs
    expect(text).toEqual({ type: 'text', source: 'stdout', text: 'chart' })
    expect(image).toMatchObject({ type: 'image', mime_type: 'image/png', file_id: expect.stringMatching(/^file_/) })
    const png = await fetch(`${ctx.service.url}/v1/files/${image.file_id}/content`, { headers: { authorization: `Bearer ${TEST_KEY}` } })
    expect(Buffer.from(await png.arrayBuffer()).subarray(1, 4).toString()).toBe('PNG')
    expect(value).toEqual({ type: 'text', source: 'result', text: '42' })
  })

  it('reports an exception as a failed execution with the user traceback', async () => {
    const res = await execute(ctx.service, "data = {'a': 1}\ndata['b']")
    expect(res.status).toBe(200)
    expect(res.body.status).toBe('failed')
    expect(res.body.outputs).toHaveLength(1)
    expect(res.body.outputs[0]).toMatchObject({ type: 'error', name: 'KeyError', message: "'b'" })
    expect(res.body.outputs[0].traceback).toContain('File "<cell>", line 2')
  })

  it('stops a block at the time limit and keeps its output so far', async () => {
    const res = await execute(ctx.service, "print('working', flush=True)\nwhile True: pass", { timeout_ms: 800 })
    expect(res.body.status).toBe('timed_out')
    expect(res.body.outputs[0]).toEqual({ type: 'text', source: 'stdout', text: 'working' })
    expect(res.body.outputs.at(-1)).toMatchObject({ type: 'error', name: 'TimeoutError' })
  })

  it('never lets the code see the server environment or credentials', async () => {
    const code =
      "import os\nout = [repr(dict(os.environ))]\nfor p in os.listdir('/proc'):\n    if p.isdigit():\n" +
      "        try: out.append(open(f'/proc/{p}/environ','rb').read().decode(errors='replace'))\n        except OSError: pass\n" +
      "print('\\n'.join(out))"
    const res = await execute(ctx.service, code)
    expect(res.body.status).toBe('completed')
    const all = JSON.stringify(res.body)
    expect(all).not.toContain(SERVER_SECRET)
    expect(all).not.toContain('AWS_')
  })

  it('has no network: a connection to the API itself is refused', async () => {
    const port = new URL(ctx.service.url).port
    const res = await execute(ctx.service, `import urllib.request\nurllib.request.urlopen('http://127.0.0.1:${port}/v1/health', timeout=2)`)
    expect(res.body.status).toBe('failed')
    expect(res.body.outputs[0].name).toMatch(/PermissionError|URLError/)
  })

  it('never lets one worker serve two organizations (tenant isolation)', async () => {
    const orgs = ['org_test', 'org_second', 'org_third', 'org_test', 'org_second']
    const keys: Record<string, string> = {}
    const zygotes: Record<string, Set<string>> = {}
    for (const org of orgs) {
      if (org !== 'org_test') keys[org] ??= await ctx.service.issueKey(org)
      const headers = org === 'org_test' ? undefined : { authorization: `Bearer ${keys[org]}` }
      // The child's parent is its worker's zygote: one per worker process.
      const res = await api(ctx.service, 'POST', '/v1/executions', { organization_id: org, code: 'import os\nprint(os.getppid())' }, headers)
      expect(res.body.status).toBe('completed')
      ;(zygotes[org] ??= new Set()).add(res.body.outputs[0].text)
    }
    const seen = Object.values(zygotes).flatMap((s) => [...s])
    expect(new Set(seen).size).toBe(seen.length)
  })
})

describe('request validation and auth', () => {
  it('401 without a key, with a machine-readable code', async () => {
    const res = await api(ctx.service, 'POST', '/v1/executions', { organization_id: 'org_test', code: '1' }, {})
    expect(res.status).toBe(401)
    expect(res.body.error.code).toBe('unauthorized')
  })

  it('401 with a wrong key', async () => {
    const res = await api(ctx.service, 'POST', '/v1/executions', { organization_id: 'org_test', code: '1' }, { authorization: 'Bearer sk_wrong_key_000000000000' })
    expect(res.status).toBe(401)
  })

  it('403 for another organization', async () => {
    const res = await execute(ctx.service, '1', {}, 'org_someone_else')
    expect(res.status).toBe(403)
    expect(res.body.error.code).toBe('forbidden')
  })

  it('400 for bad JSON', async () => {
    const res = await api(ctx.service, 'POST', '/v1/executions', '{"organization_id": ')
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('invalid_json')
  })

  it.each([
    [{ code: '1' }, 'organization_id'],
    [{ organization_id: 'org_test' }, 'code'],
    [{ organization_id: 'org_test', code: '' }, 'code'],
    [{ organization_id: 'org_test', code: 1 }, 'code'],
    [{ organization_id: 'org_test', code: '1', extra: true }, 'extra'],
    [{ organization_id: 'org_test', code: '1', timeout_ms: 'fast' }, 'timeout_ms'],
    [{ organization_id: 'org_test', code: 'x'.repeat(MAX_CODE_CHARS + 1) }, 'code'],
  ])('400 naming the field for %j', async (body, field) => {
    const res = await api(ctx.service, 'POST', '/v1/executions', body)
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('invalid_request')
    expect(res.body.error.message).toContain(field)
  })

  it('413 past the API Gateway body limit', async () => {
    const res = await api(ctx.service, 'POST', '/v1/executions', 'x'.repeat(10 * 1024 * 1024 + 1))
    expect(res.status).toBe(413)
    expect(res.body.error.code).toBe('request_too_large')
  })

  it('404 and 405 with codes', async () => {
    expect((await api(ctx.service, 'GET', '/v1/nothing')).body.error.code).toBe('not_found')
    const res = await api(ctx.service, 'GET', '/v1/executions')
    expect([404, 405]).toContain(res.status)
  })

  it('health answers without a key', async () => {
    const res = await api(ctx.service, 'GET', '/v1/health', undefined, {})
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ status: 'ok', object: 'health' })
  })

  it('health with a key reports the isolation layers the sandbox was granted', async () => {
    const res = await api(ctx.service, 'GET', '/v1/health')
    expect(res.status).toBe(200)
    expect(res.body.sandbox.layers).toMatchObject({ seccomp: true, no_new_privs: true, rlimits: true, nondumpable: true })
    expect(res.body.sandbox.runtime.python).toMatch(/^3\./)
  })

  it('logs one line per request, never the code', async () => {
    const marker = 'very_secret_code_marker_123'
    await execute(ctx.service, `${marker} = 1`)
    expect(ctx.lines.some((l) => l.startsWith('POST /v1/executions 200'))).toBe(true)
    expect(ctx.lines.join('\n')).not.toContain(marker)
  })
})
