import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ScriptedModel } from '../../functions/adapters/models/scripted'
import { PROJECT_ROOT } from '../../functions/local/service'
import { parseSmokeArgs, type SmokeOptions, UsageError } from '../../bin/smoke/args'
import { runSmoke } from '../../bin/smoke/checks'
import { CREDENTIALS_PROBE, DEFAULT_REQUIRED } from '../../bin/smoke/probes'
import { api, startTestService, TEST_KEY } from '../support/local'

// `npm run smoke` against the whole local service (root posture as root, as the suite runs):
// every check passes; and it fails, with one clear line, where a check fails.
const run = promisify(execFile)
const PLANTED = 'planted-secret-value-5f0c2e'

let ctx: Awaited<ReturnType<typeof startTestService>>
let proxy: Server
let proxyUrl: string

const options = (url: string, ...args: string[]): SmokeOptions => {
  const parsed = parseSmokeArgs(['--url', url, ...args], { SMOKE_API_KEY: TEST_KEY })
  if (parsed === 'help') throw new Error('help')
  return parsed
}

/** The smoke CLI as a user runs it (npm run smoke), without the key on its command line. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('npm', ['run', '-s', 'smoke', '--', ...args], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, SMOKE_API_KEY: TEST_KEY },
      timeout: 120_000,
    })
    return { code: 0, stdout, stderr }
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

beforeAll(async () => {
  ctx = await startTestService(
    { SANDBOX_SLOT_UID_BASE: '67000', CODE_TIMEOUT_MS: '5000' },
    { model: new ScriptedModel({ script: join(PROJECT_ROOT, 'test/fixtures/scripted/compound-interest.json') }) },
  )
  // No honest way makes this sandbox leak a variable into a block: the zygote is exec'd with a
  // fixed minimal environment and the child clears os.environ (the attack suite's planted
  // PROVIDER_SECRET_FOR_ATTACK_TEST never reaches the workers: workerEnv passes only SANDBOX_*,
  // PATH, LANG and CODE_TIMEOUT_MS, and even those stop at the runner). So a proxy in front of
  // the real API plays a leaking sandbox: it plants AWS_SECRET_ACCESS_KEY in the credentials
  // probe's own os.environ before the probe's code runs, and it plays a server without a model
  // (503 model_not_configured). Everything else passes through to the real service.
  proxy = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    let body: Buffer | undefined = chunks.length ? Buffer.concat(chunks) : undefined
    if (req.method === 'POST' && req.url === '/v1/responses') {
      res.writeHead(503, { 'content-type': 'application/json' })
      return void res.end(JSON.stringify({ error: { code: 'model_not_configured', message: 'No model provider is configured.' } }))
    }
    if (req.method === 'POST' && req.url === '/v1/executions' && body) {
      const request = JSON.parse(body.toString())
      if (request.code === CREDENTIALS_PROBE) {
        request.code = `import os\nos.environ['AWS_SECRET_ACCESS_KEY'] = '${PLANTED}'\n${request.code}`
        body = Buffer.from(JSON.stringify(request))
      }
    }
    const headers = Object.fromEntries(
      Object.entries(req.headers).filter(([k, v]) => typeof v === 'string' && !['host', 'content-length', 'connection'].includes(k)),
    ) as Record<string, string>
    const upstream = await fetch(ctx.service.url + req.url, { method: req.method, headers, body })
    res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/octet-stream' })
    res.end(Buffer.from(await upstream.arrayBuffer()))
  })
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()))
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
})

afterAll(async () => {
  proxy?.closeAllConnections()
  await new Promise<void>((r) => (proxy ? proxy.close(() => r()) : r()))
  await ctx?.stop()
})

describe('npm run smoke', () => {
  it('passes every check against the local service', async () => {
    const report = await runSmoke(options(ctx.service.url))
    const byCheck = Object.fromEntries(report.results.map((r) => [r.check, r]))
    const failures = report.results.filter((r) => r.result === 'fail')
    expect(failures).toEqual([])
    expect(report.ok).toBe(true)
    expect(report).toMatchObject({ organization: 'org_test', posture: ctx.service.posture })
    for (const check of [
      'health',
      'key',
      'execution',
      'latency: first block',
      'latency: next blocks',
      'layers',
      'failing block',
      'timeout',
      'network: public TCP',
      'network: DNS',
      'credentials',
      'file in',
      'chart out',
      'session state',
      'model response',
    ]) {
      expect([check, byCheck[check]?.result]).toEqual([check, 'pass'])
    }
    // Root posture (as the suite runs): the Runtime API is refused like any socket.
    expect(byCheck['network: Runtime API'].result).toBe(ctx.service.posture === 'lambda' ? 'info' : 'pass')
    expect(byCheck['timeout'].ms).toBeLessThan(5000)
    expect(byCheck['model response'].detail).toContain('model scripted')
    expect(byCheck['cleanup']).toMatchObject({ result: 'info', detail: expect.stringContaining('deleted') })
    // It leaves nothing behind: no file, no assistant.
    expect((await api(ctx.service, 'GET', '/v1/files')).body.data).toEqual([])
    expect((await api(ctx.service, 'GET', '/v1/assistants')).body.data).toEqual([])
  }, 120_000)

  it('the CLI prints the table and exits 0 when every check passes', async () => {
    const out = await cli(['--url', `${ctx.service.url}/v1`])
    expect(out.stderr).toBe('')
    expect(out.stdout).toMatch(/^check\s+result\s+ms\s+detail$/m)
    expect(out.stdout).toMatch(/^execution\s+pass\s+\d+\s+print\(1\+1\) -> "2"/m)
    expect(out.stdout).toMatch(/^OK: \d+ passed, 0 failed/m)
    expect(out.stdout).not.toContain(TEST_KEY)
    expect(out.code).toBe(0)
  }, 120_000)

  it('fails, with one clear line and exit code 1, when a block can see a credential (names only)', async () => {
    const report = await runSmoke(options(proxyUrl, '--skip', 'timeout,files,session,latency'))
    expect(report.ok).toBe(false)
    const failures = report.results.filter((r) => r.result === 'fail')
    expect(failures.map((f) => f.check)).toEqual(['credentials'])
    expect(failures[0].detail).toContain('AWS_SECRET_ACCESS_KEY in os.environ')
    expect(JSON.stringify(report)).not.toContain(PLANTED)
    expect(report.results.find((r) => r.check === 'model response')).toMatchObject({ result: 'n/a', detail: expect.stringContaining('model_not_configured') })

    const out = await cli(['--url', proxyUrl, '--skip', 'timeout,files,session,latency,model,network,error'])
    expect(out.code).toBe(1)
    expect(out.stdout).toMatch(/^FAIL credentials: credential-like names within a block's reach: AWS_SECRET_ACCESS_KEY in os\.environ/m)
    expect(out.stdout.match(/^FAIL /gm)).toHaveLength(1)
    expect(out.stdout).toMatch(/^FAILED: \d+ passed, 1 failed/m)
    expect(out.stdout + out.stderr).not.toContain(PLANTED)
    // --json: the same, machine-readable.
    const json = await cli(['--url', proxyUrl, '--json', '--skip', 'timeout,files,session,latency,model,network,error'])
    expect(json.code).toBe(1)
    const parsed = JSON.parse(json.stdout)
    expect(parsed.ok).toBe(false)
    expect(parsed.results.find((r: any) => r.check === 'credentials').result).toBe('fail')
  }, 120_000)

  it('fails the layers check for a required layer the sandbox did not grant', async () => {
    // Honest, against the real server: uid_sweep is not used in the root posture.
    const required = ctx.service.posture === 'root' ? 'uid_sweep' : 'uid_kill'
    const report = await runSmoke(options(ctx.service.url, '--require', required, '--skip', 'error,timeout,network,credentials,files,session,model,latency'))
    const layers = report.results.find((r) => r.check === 'layers')
    expect(layers).toMatchObject({ result: 'fail', detail: `${required} is required (--require) but was not granted (not attempted in this posture)` })
    expect(report.ok).toBe(false)
  }, 60_000)

  it('says "the key was refused" for a wrong key, and stops there', async () => {
    const report = await runSmoke({ ...options(ctx.service.url), key: 'wrong_key_0123456789' })
    expect(report.results.map((r) => [r.check, r.result])).toEqual([
      ['health', 'pass'],
      ['key', 'fail'],
    ])
    expect(report.results[1].detail).toMatch(/^the key was refused \(HTTP 401/)
  })

  it('says why it cannot reach a URL, and refuses bad arguments before any request', async () => {
    const closed = createServer()
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()))
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`
    await new Promise<void>((r) => closed.close(() => r()))
    const report = await runSmoke(options(url))
    expect(report.results).toEqual([{ check: 'health', result: 'fail', detail: expect.stringMatching(/^cannot reach .*: connection refused/) }])

    const usage = (args: string[], env: Record<string, string> = { SMOKE_API_KEY: 'k' }) => {
      try {
        parseSmokeArgs(args, env)
      } catch (error) {
        expect(error).toBeInstanceOf(UsageError)
        return (error as Error).message
      }
      throw new Error('accepted')
    }
    expect(usage(['--url', 'not a url'])).toContain('--url: not an http(s) URL')
    expect(usage(['--url', 'ftp://example.com'])).toContain('--url: not an http(s) URL')
    expect(usage(['--url', 'http://example.com/v1'])).toContain('would send the key unencrypted')
    expect(usage(['--url', 'https://example.com/v1'], {})).toContain('--key: no API key')
    expect(usage(['--skip', 'everything'])).toContain('--skip: unknown check "everything"')
    expect(usage(['--timeout-ms', '50'])).toContain('--timeout-ms: must be at least 100')
    expect(usage(['--frobnicate'])).toContain("Unknown option '--frobnicate'")
    expect(parseSmokeArgs(['--help'], {})).toBe('help')
    const https = parseSmokeArgs(['--url', 'https://abc.execute-api.eu-west-1.amazonaws.com/prod/v1', '--skip', 'model', '--skip', 'timeout,files'], { SMOKE_API_KEY: 'k' })
    expect(https).toMatchObject({ key: 'k', skip: ['model', 'timeout', 'files'], timeoutMs: 2000, warmBlocks: 5 })
  })

  it("knows each posture's required layers as the sandbox does (python-runtime/sandbox/config.py)", () => {
    const source = readFileSync(join(PROJECT_ROOT, 'python-runtime/sandbox/config.py'), 'utf8')
    const block = source.slice(source.indexOf('DEFAULT_REQUIRED = {'), source.indexOf('}', source.indexOf('DEFAULT_REQUIRED = {')))
    const fromPython = Object.fromEntries(
      [...block.matchAll(/"(\w+)":\s*\(([^)]*)\)/g)].map(([, posture, names]) => [posture, [...names.matchAll(/"(\w+)"/g)].map((m) => m[1])]),
    )
    expect(Object.keys(fromPython).sort()).toEqual(['deployed', 'lambda', 'root'])
    expect(fromPython).toEqual(DEFAULT_REQUIRED)
  })
})
