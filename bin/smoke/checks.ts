/**
 * The smoke checks of `npm run smoke`: one run against a live API (deployed or local), through
 * its public HTTP API only. runSmoke never throws for a failing check: every outcome is a row.
 */
import { performance } from 'node:perf_hooks'
import { z } from 'zod'
import type { Skippable, SmokeOptions } from './args'
import * as probe from './probes'

export type Result = 'pass' | 'fail' | 'info' | 'n/a' | 'skip'

export interface CheckRow {
  check: string
  result: Result
  detail: string
  /** Client-side time of the check's HTTP call(s), when it made any. */
  ms?: number
}

export interface SmokeReport {
  ok: boolean
  url: string
  organization?: string
  posture?: string
  started_at: string
  total_ms: number
  results: CheckRow[]
}

interface Reply {
  status: number
  body: any
  text: string
  ms: number
  headers: Headers
}

/** The API could not be reached at all (DNS, refused, TLS, timeout). */
class Unreachable extends Error {}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

const ExecutionBody = z.object({
  id: z.string(),
  status: z.enum(['completed', 'failed', 'timed_out']),
  outputs: z.array(z.looseObject({ type: z.string() })),
  duration_ms: z.number().optional(),
})
type ExecutionBody = z.infer<typeof ExecutionBody>

const HealthBody = z.looseObject({
  status: z.literal('ok'),
  sandbox: z
    .looseObject({
      layers: z.record(z.string(), z.unknown()),
      refused: z.record(z.string(), z.string()).optional(),
      runtime: z.record(z.string(), z.unknown()).optional(),
    })
    .optional(),
})

const NETWORK_ERRORS: Record<string, string> = {
  ECONNREFUSED: 'connection refused: nothing listens there',
  ENOTFOUND: 'no such host',
  EAI_AGAIN: 'the host name could not be resolved now',
  ECONNRESET: 'the connection was reset',
  ETIMEDOUT: 'the connection timed out',
  EHOSTUNREACH: 'the host is unreachable',
  CERT_HAS_EXPIRED: 'its TLS certificate has expired',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'its TLS certificate is self-signed',
  ERR_TLS_CERT_ALTNAME_INVALID: "its TLS certificate does not name this host",
}

/** Throttling that passes: API Gateway's per-plan rate (not its daily quota) and a full sandbox queue. */
const RETRIED = new Set(['rate_limited', 'sandbox_busy'])

/** The row a skipped group shows as. */
const SKIP_ROWS: Record<Skippable, string> = {
  layers: 'layers',
  error: 'failing block',
  timeout: 'timeout',
  network: 'network',
  credentials: 'credentials',
  files: 'file in, chart out',
  session: 'session state',
  model: 'model response',
  latency: 'latency',
}

const round = (ms: number) => Math.round(ms * 10) / 10
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const clip = (s: string, n = 160) => (s.length > n ? `${s.slice(0, n - 1)}…` : s)

/** One plain sentence for an API error answer. */
export function explain(reply: Reply): string {
  const error = reply.body?.error
  const code: string | undefined = error?.code
  const message: string = error?.message ?? (typeof reply.body?.message === 'string' ? reply.body.message : clip(reply.text.replace(/\s+/g, ' '), 200))
  if (reply.status === 401) return `the key was refused (HTTP 401${code ? ` ${code}` : ''}): use a key issued with npm run admin -- key issue <org>`
  if (reply.status === 403 && /Missing Authentication Token/i.test(message)) {
    return 'HTTP 403 "Missing Authentication Token": API Gateway has no such route; is --url the stack\'s ApiUrl output (ending in /v1)?'
  }
  if (code === 'code_interpreter_not_available') return `the key's organization has no code interpreter on its plan (HTTP 403: ${message}); npm run admin -- org set-plan <org> standard`
  if (code === 'sandbox_unavailable') return `the sandbox could not run (HTTP 503 sandbox_unavailable): ${message}`
  if (code === 'execution_limit_reached' || code === 'quota_exceeded' || code === 'rate_limited') return `over a limit (HTTP ${reply.status} ${code}): ${message}`
  return `HTTP ${reply.status}${code ? ` ${code}` : ''}: ${message || '(empty body)'}`
}

const texts = (exec: ExecutionBody, source?: string) =>
  exec.outputs.filter((o: any) => o.type === 'text' && (source === undefined || o.source === source)).map((o: any) => String(o.text))

const stdout = (exec: ExecutionBody) => texts(exec, 'stdout').join('\n')

/** The `SMOKE {...}` line a probe printed, parsed; undefined if there is none. */
function probeResult(exec: ExecutionBody): any {
  const line = stdout(exec)
    .split('\n')
    .reverse()
    .find((l) => l.startsWith(probe.MARKER))
  if (!line) return undefined
  try {
    return JSON.parse(line.slice(probe.MARKER.length))
  } catch {
    return undefined
  }
}

const errorOf = (exec: ExecutionBody): any => exec.outputs.find((o) => o.type === 'error')

/** What an execution that did not go as planned looked like, in a few words. */
function describeExecution(exec: ExecutionBody): string {
  const error = errorOf(exec)
  const out = texts(exec).join(' | ')
  return `status ${exec.status}${error ? `, ${error.name}: ${clip(String(error.message ?? ''), 120)}` : ''}${out ? `, output ${JSON.stringify(clip(out, 120))}` : ''}`
}

/** The API base without a trailing slash or /v1, so both the stage URL and the ApiUrl output work. */
export const apiBase = (url: string) => url.replace(/\/+$/, '').replace(/\/v1$/, '')

export interface SmokeDeps {
  fetch?: typeof fetch
}

/** Runs every check (but those in options.skip) and returns the rows; never throws for a check. */
export async function runSmoke(options: SmokeOptions, deps: SmokeDeps = {}): Promise<SmokeReport> {
  const doFetch = deps.fetch ?? fetch
  const base = apiBase(options.url)
  const started = performance.now()
  const startedAt = new Date().toISOString()
  const rows: CheckRow[] = []
  const skip = new Set<string>(options.skip)
  const add = (check: string, result: Result, detail: string, ms?: number) => {
    const row: CheckRow = { check, result, detail }
    if (ms !== undefined) row.ms = round(ms)
    rows.push(row)
    return row
  }
  const report = (extra: Pick<SmokeReport, 'organization' | 'posture'> = {}): SmokeReport => {
    for (const group of options.skip) add(SKIP_ROWS[group], 'skip', 'left out (--skip)')
    return {
      ok: rows.every((r) => r.result !== 'fail'),
      url: base,
      ...(extra.organization ? { organization: extra.organization } : {}),
      ...(extra.posture ? { posture: extra.posture } : {}),
      started_at: startedAt,
      total_ms: round(performance.now() - started),
      results: rows,
    }
  }
  const auth = { authorization: `Bearer ${options.key}` }

  type CallInit = { json?: unknown; form?: FormData; key?: boolean; timeoutS?: number; binary?: boolean }

  /** One HTTP call; a throttled answer (429 rate_limited or sandbox_busy) is retried up to 3 times, 1, 2, 3 s apart. */
  async function call(method: string, path: string, init: CallInit = {}): Promise<Reply> {
    let reply = await callOnce(method, path, init)
    for (let attempt = 1; attempt <= 3 && reply.status === 429 && RETRIED.has(reply.body?.error?.code); attempt++) {
      await new Promise((r) => setTimeout(r, attempt * 1000))
      reply = await callOnce(method, path, init)
    }
    return reply
  }

  async function callOnce(method: string, path: string, init: CallInit): Promise<Reply> {
    const headers: Record<string, string> = init.key === false ? {} : { ...auth }
    let body: string | FormData | undefined
    if (init.json !== undefined) {
      headers['content-type'] = 'application/json'
      body = JSON.stringify(init.json)
    } else if (init.form) body = init.form
    const t0 = performance.now()
    let res: Response
    try {
      res = await doFetch(`${base}${path}`, {
        method,
        headers,
        body,
        redirect: 'follow',
        signal: AbortSignal.timeout((init.timeoutS ?? options.requestTimeoutS) * 1000),
      })
    } catch (error) {
      const e = error as Error & { cause?: { code?: string; message?: string } }
      const code = e.cause?.code
      const why =
        e.name === 'TimeoutError'
          ? `no answer within ${init.timeoutS ?? options.requestTimeoutS} s`
          : code && NETWORK_ERRORS[code]
            ? `${NETWORK_ERRORS[code]} (${code})`
            : (code ?? e.cause?.message ?? e.message)
      throw new Unreachable(`cannot reach ${base}${path}: ${why}`)
    }
    if (init.binary) {
      const bytes = Buffer.from(await res.arrayBuffer())
      return { status: res.status, body: bytes, text: '', ms: performance.now() - t0, headers: res.headers }
    }
    const text = await res.text()
    const ms = performance.now() - t0
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      parsed = undefined
    }
    return { status: res.status, body: parsed, text, ms, headers: res.headers }
  }

  let organization = options.org
  let posture: string | undefined
  const cleanup: { what: string; path: string }[] = []

  /** POST /v1/executions; an ExecutionBody, or a sentence saying why there is none. */
  async function execute(code: string, extra: Record<string, unknown> = {}): Promise<{ exec?: ExecutionBody; why?: string; ms: number }> {
    const reply = await call('POST', '/v1/executions', { json: { organization_id: organization, code, ...extra } })
    if (reply.status !== 200) return { why: explain(reply), ms: reply.ms }
    const parsed = ExecutionBody.safeParse(reply.body)
    if (!parsed.success) return { why: `not an execution: ${clip(reply.text, 200)}`, ms: reply.ms }
    return { exec: parsed.data, ms: reply.ms }
  }

  /** Runs one check; an unreachable API mid-run becomes that check's failure. */
  async function guarded(check: string, fn: () => Promise<void>) {
    try {
      await fn()
    } catch (error) {
      add(check, 'fail', error instanceof Unreachable ? error.message : `unexpected error: ${(error as Error).message}`)
    }
  }

  // 1. Liveness: the URL is the API at all.
  try {
    const health = await call('GET', '/v1/health', { key: false })
    if (health.status !== 200 || health.body?.status !== 'ok') {
      add('health', 'fail', `GET ${base}/v1/health: ${explain(health)} (is --url the API's base URL, e.g. the stack's ApiUrl output?)`, health.ms)
      return report()
    }
    add('health', 'pass', `GET /v1/health answered {"status": "ok"}`, health.ms)
  } catch (error) {
    add('health', 'fail', (error as Error).message)
    return report()
  }

  // 2. The key, and the organization it belongs to (a session, reused by the session check).
  let sessionId: string | undefined
  try {
    const session = await call('POST', '/v1/sessions', { json: organization ? { organization_id: organization } : {} })
    if (session.status !== 200 || typeof session.body?.id !== 'string') {
      add('key', 'fail', explain(session), session.ms)
      return report({ organization })
    }
    sessionId = session.body.id
    organization = session.body.organization_id ?? organization
    cleanup.push({ what: 'session', path: `/v1/sessions/${sessionId}` })
    add('key', 'pass', `accepted for ${organization}`, session.ms)
  } catch (error) {
    add('key', 'fail', (error as Error).message)
    return report({ organization })
  }

  try {
    // 3. The first block (cold latency), then the next ones (warm).
    const first = await execute(probe.FIRST_BLOCK)
    const firstOk = first.exec?.status === 'completed' && stdout(first.exec) === '2'
    add(
      'execution',
      firstOk ? 'pass' : 'fail',
      firstOk ? `print(1+1) -> "2" (${first.exec!.id})` : `print(1+1) did not answer "2": ${first.why ?? describeExecution(first.exec!)}`,
      first.ms,
    )
    if (!skip.has('latency')) {
      add(
        'latency: first block',
        firstOk ? 'pass' : 'fail',
        firstOk
          ? `${Math.round(first.ms)} ms round trip, the block itself ${round(first.exec!.duration_ms ?? 0)} ms (cold only if no sandbox environment of ${organization} and no API function instance was warm)`
          : 'the first block failed',
        first.ms,
      )
    }
    if (!first.exec) {
      // Nothing else can run; the health probe still says why when the sandbox refused to start.
      if (!skip.has('layers')) await guarded('layers', checkLayers)
      add('remaining checks', 'fail', `not run: the first block got no execution (${first.why})`)
      return report({ organization, posture })
    }
    if (!skip.has('latency')) {
      await guarded('latency: next blocks', async () => {
        const times: number[] = []
        for (let i = 0; i < options.warmBlocks; i++) {
          const next = await execute(probe.FIRST_BLOCK)
          if (next.exec?.status !== 'completed' || stdout(next.exec) !== '2') {
            add('latency: next blocks', 'fail', `block ${i + 2} did not answer "2": ${next.why ?? describeExecution(next.exec!)}`, next.ms)
            return
          }
          times.push(next.ms)
        }
        const m = median(times)
        add(
          'latency: next blocks',
          'pass',
          `median ${Math.round(m)} ms, min ${Math.round(Math.min(...times))}, max ${Math.round(Math.max(...times))} over ${times.length} × print(1+1) (warm)`,
          m,
        )
      })
    }

    // 4. The sandbox's isolation layers, probed in this organization's environment.
    if (!skip.has('layers')) await guarded('layers', checkLayers)

    // 5. A failing block.
    if (!skip.has('error')) {
      await guarded('failing block', async () => {
        const r = await execute(probe.FAILING_BLOCK)
        if (!r.exec) return void add('failing block', 'fail', r.why!, r.ms)
        const error = errorOf(r.exec)
        const tb = String(error?.traceback ?? '')
        const problems: string[] = []
        if (r.exec.status !== 'failed') problems.push(`status ${r.exec.status}, expected failed`)
        if (error?.name !== 'ZeroDivisionError') problems.push(`error ${error?.name ?? '(none)'}, expected ZeroDivisionError`)
        if (!/line 4/.test(tb) || !/line 2, in smoke_divide/.test(tb)) problems.push('the traceback does not show the user\'s lines 4 and 2')
        if (/sandbox[/\\]|runner\.py|child\.py|zygote\.py/.test(tb)) problems.push('the traceback shows sandbox internals')
        add(
          'failing block',
          problems.length ? 'fail' : 'pass',
          problems.length ? problems.join('; ') : `status failed, ZeroDivisionError, traceback of ${tb.match(/File "/g)?.length ?? 0} user frames only`,
          r.ms,
        )
      })
    }

    // 6. A block past its time limit.
    if (!skip.has('timeout')) {
      await guarded('timeout', async () => {
        const r = await execute(probe.TIMEOUT_BLOCK, { timeout_ms: options.timeoutMs })
        if (!r.exec) return void add('timeout', 'fail', r.why!, r.ms)
        const ok = r.exec.status === 'timed_out'
        const kept = stdout(r.exec).includes('sleeping')
        add(
          'timeout',
          ok ? 'pass' : 'fail',
          ok
            ? `timed_out after ${Math.round(r.ms)} ms with timeout_ms ${options.timeoutMs}${errorOf(r.exec)?.name ? ` (${errorOf(r.exec).name})` : ''}${kept ? ', output so far kept' : ''}`
            : `a block sleeping 120 s with timeout_ms ${options.timeoutMs} was not stopped: ${describeExecution(r.exec)}`,
          r.ms,
        )
      })
    }

    // 7. No network from inside a block.
    if (!skip.has('network')) await guarded('network', checkNetwork)

    // 8. No credentials within the block's reach.
    if (!skip.has('credentials')) await guarded('credentials', checkCredentials)

    // 9. A file in, a chart out.
    if (!skip.has('files')) await guarded('file in', checkFiles)

    // 10. State carried in a session.
    if (!skip.has('session')) {
      await guarded('session state', async () => {
        const a = await execute(probe.SESSION_SET, { session_id: sessionId })
        if (a.exec?.status !== 'completed') return void add('session state', 'fail', `first block: ${a.why ?? describeExecution(a.exec!)}`, a.ms)
        const b = await execute(probe.SESSION_GET, { session_id: sessionId })
        const ok = b.exec?.status === 'completed' && stdout(b.exec) === '42'
        add(
          'session state',
          ok ? 'pass' : 'fail',
          ok ? `the second block of ${sessionId} read the variable the first set (42)` : `second block: ${b.why ?? describeExecution(b.exec!)}`,
          a.ms + b.ms,
        )
      })
    }

    // 11. A response with the configured model.
    if (!skip.has('model')) await guarded('model response', checkModel)
  } catch (error) {
    add('run', 'fail', error instanceof Unreachable ? error.message : `unexpected error: ${(error as Error).message}`)
  } finally {
    await removeWhatWasMade()
  }
  return report({ organization, posture })

  async function checkLayers() {
    const reply = await call('GET', '/v1/health')
    if (reply.status !== 200) {
      return void add(
        'layers',
        'fail',
        reply.body?.error?.code === 'sandbox_unavailable'
          ? `the sandbox refused to start (fail closed), so no block can run: ${reply.body.error.message}`
          : `GET /v1/health with the key: ${explain(reply)}`,
        reply.ms,
      )
    }
    const health = HealthBody.safeParse(reply.body)
    if (!health.success || !health.data.sandbox) {
      return void add('layers', 'fail', `GET /v1/health with the key returned no sandbox layers: ${clip(reply.text, 200)}`, reply.ms)
    }
    const { layers, refused = {} } = health.data.sandbox
    posture = typeof layers.posture === 'string' ? layers.posture : undefined
    const required = [...new Set([...(posture ? (probe.DEFAULT_REQUIRED[posture] ?? []) : []), ...options.require])]
    const granted = (name: string) => layers[name] !== undefined && layers[name] !== false && layers[name] !== null
    const missing = required.filter((name) => !granted(name))
    const grantedNames = Object.keys(layers).filter((k) => k !== 'posture' && granted(k))
    if (!posture) {
      add('layers', 'fail', `the health probe names no posture; granted: ${grantedNames.join(', ') || '(none)'}`, reply.ms)
    } else if (!probe.DEFAULT_REQUIRED[posture] && !options.require.length) {
      add('layers', 'fail', `unknown posture "${posture}": cannot tell which layers it requires (pass --require)`, reply.ms)
    } else if (missing.length) {
      const why = missing.map((name) => {
        const reason = refused[name]
        return `${name} is required${options.require.includes(name) ? ' (--require)' : ` in the ${posture} posture`} but ${reason ? `was refused: ${reason}` : 'was not granted (not attempted in this posture)'}`
      })
      add('layers', 'fail', why.join('; '), reply.ms)
    } else {
      const extra = grantedNames.filter((n) => !required.includes(n))
      add(
        'layers',
        'pass',
        `${posture} posture: the ${required.length} required layers granted (${required.join(', ')})${extra.length ? `; also granted: ${extra.join(', ')}` : ''}`,
        reply.ms,
      )
    }
    const notRequired = Object.keys(refused).filter((name) => !required.includes(name))
    if (notRequired.length) {
      const expected = posture === 'lambda' ? notRequired.filter((n) => probe.LAMBDA_EXPECTED_REFUSALS.includes(n)) : []
      const unexpected = notRequired.filter((n) => !expected.includes(n))
      const parts = [
        ...(expected.length ? [`refused as Lambda is expected to: ${expected.join(', ')}`] : []),
        ...unexpected.map((n) => `${n} refused (${refused[n]})${n === 'nondumpable' ? ": a block may read the runner's environment and memory, see docs/security.md \"If nondumpable is refused\"" : ''}`),
      ]
      add('layers refused', 'info', `not required, so the sandbox runs without them: ${parts.join('; ')}`)
    }
  }

  async function checkNetwork() {
    const r = await execute(probe.NETWORK_PROBE, { timeout_ms: 25_000 })
    if (!r.exec) return void add('network', 'fail', r.why!, r.ms)
    const out = probeResult(r.exec)
    if (!out) return void add('network', 'fail', `the probe printed no result: ${describeExecution(r.exec)}`, r.ms)
    type Attempt = { reached: boolean; how: string }
    const line = (a?: Attempt) => (a ? (a.reached ? `REACHED (${a.how})` : a.how) : 'not tried')
    const tcp = out.public_tcp as { target: string; socket: Attempt; raw: Attempt }
    const tcpReached = tcp.socket.reached || tcp.raw.reached
    add(
      'network: public TCP',
      tcpReached ? 'fail' : 'pass',
      `${tcpReached ? 'a block reached' : 'refused:'} ${tcp.target}: socket module: ${line(tcp.socket)}; raw syscalls past the audit hook: ${line(tcp.raw)}`,
      r.ms,
    )
    const dns = out.dns as { target: string; socket: Attempt }
    add('network: DNS', dns.socket.reached ? 'fail' : 'pass', `${dns.socket.reached ? 'a block resolved' : 'no answer for'} ${dns.target}: ${line(dns.socket)}`)
    const apis = out.runtime_api as { target: string; socket: Attempt; raw: Attempt }[]
    const reached = apis.filter((a) => a.socket.reached || a.raw.reached)
    if (reached.length && posture === undefined) {
      // --skip layers: the posture decides whether a reachable Runtime API is by design.
      const health = await call('GET', '/v1/health')
      const named = health.body?.sandbox?.layers?.posture
      if (typeof named === 'string') posture = named
    }
    const all = apis.map((a) => `${a.target}: socket module: ${line(a.socket)}; raw syscalls: ${line(a.raw)}`).join(' / ')
    if (!reached.length) add('network: Runtime API', 'pass', `refused: ${all}`)
    else if (posture === 'lambda') {
      add(
        'network: Runtime API',
        'info',
        `reachable, as inside Lambda by design (the lambda posture has no seccomp; a block may read its own event and answer its own request, within one organization under PER_TENANT; docs/security.md): ${all}`,
      )
    } else {
      add('network: Runtime API', 'fail', `a block reached ${reached.map((a) => a.target).join(', ')} in the ${posture ?? 'unknown (layers not checked)'} posture: ${all}`)
    }
  }

  async function checkCredentials() {
    const r = await execute(probe.CREDENTIALS_PROBE, { timeout_ms: 25_000 })
    if (!r.exec) return void add('credentials', 'fail', r.why!, r.ms)
    const out = probeResult(r.exec)
    if (!out) return void add('credentials', 'fail', `the probe printed no result: ${describeExecution(r.exec)}`, r.ms)
    const found = Object.entries(out.found as Record<string, string[]>)
    const runner = out.ancestors?.[1]
    const runnerReadable = runner !== undefined && (out.readable as string[]).includes(String(runner))
    const where = `the block sees ${(out.names as string[]).join(', ') || '(nothing)'}; ${(out.readable as string[]).length} other processes' environ readable, ${out.unreadable} not${runner !== undefined ? `; the runner's (pid ${runner}) ${runnerReadable ? 'READABLE' : 'unreadable'}` : ''}`
    if (found.length) {
      const whose = (w: string) => {
        const pid = /^\/proc\/(\d+)\//.exec(w)?.[1]
        return pid === String(runner) ? `${w} (the runner)` : pid === String(out.ancestors?.[0]) ? `${w} (the zygote)` : pid === '1' ? `${w} (PID 1)` : w
      }
      add('credentials', 'fail', `credential-like names within a block's reach: ${found.map(([w, names]) => `${names.join(', ')} in ${whose(w)}`).join('; ')} (${where})`, r.ms)
    } else {
      add('credentials', 'pass', `no credential-like names; ${where}`, r.ms)
    }
  }

  async function checkFiles() {
    const form = new FormData()
    form.append('purpose', 'assistants')
    form.append('file', new Blob([probe.CSV_TEXT], { type: 'text/csv' }), probe.CSV_NAME)
    const up = await call('POST', '/v1/files', { form })
    if (up.status !== 200 || typeof up.body?.id !== 'string') {
      add('file in', 'fail', `upload (POST /v1/files): ${explain(up)}`, up.ms)
      return void add('chart out', 'fail', 'not run: the upload failed')
    }
    cleanup.push({ what: 'uploaded file', path: `/v1/files/${up.body.id}` })
    const r = await execute(probe.FILES_BLOCK, { file_ids: [up.body.id] })
    if (!r.exec) {
      add('file in', 'fail', r.why!, up.ms + r.ms)
      return void add('chart out', 'fail', 'not run: the block failed')
    }
    const images = r.exec.outputs.filter((o: any) => o.type === 'image') as any[]
    for (const img of images) if (typeof img.file_id === 'string') cleanup.push({ what: 'image', path: `/v1/files/${img.file_id}` })
    const readOk = r.exec.status === 'completed' && texts(r.exec, 'stdout')[0] === '42'
    add(
      'file in',
      readOk ? 'pass' : 'fail',
      readOk ? `uploaded ${probe.CSV_NAME} (${up.body.id}); pandas read it in the block: sum 42` : `the block did not read the file: ${describeExecution(r.exec)}`,
      up.ms + r.ms,
    )
    const image = images[0]
    if (!image?.file_id) return void add('chart out', 'fail', `no image output: ${describeExecution(r.exec)}`)
    const content = await call('GET', `/v1/files/${image.file_id}/content`, { binary: true })
    const bytes = content.body as Buffer
    const isPng = content.status === 200 && bytes.subarray(0, 8).equals(PNG_SIGNATURE)
    add(
      'chart out',
      isPng ? 'pass' : 'fail',
      isPng
        ? `image ${image.file_id} (${image.mime_type}), ${bytes.length} bytes fetched, PNG signature${image.bytes === bytes.length ? ', size as reported' : `, reported ${image.bytes} bytes`}`
        : content.status !== 200
          ? `GET /v1/files/${image.file_id}/content: HTTP ${content.status}`
          : `the image's bytes do not start with the PNG signature (${bytes.subarray(0, 8).toString('hex')})`,
      content.ms,
    )
  }

  async function checkModel() {
    const made = await call('POST', '/v1/assistants', {
      json: { name: 'smoke-test', instructions: 'Use the code interpreter for arithmetic. Answer in one sentence.', tools: [{ type: 'code_interpreter' }] },
    })
    if (made.status !== 200 || typeof made.body?.id !== 'string') return void add('model response', 'fail', `creating an assistant: ${explain(made)}`, made.ms)
    cleanup.push({ what: 'assistant', path: `/v1/assistants/${made.body.id}` })
    const reply = await call('POST', '/v1/responses', {
      json: { assistant_id: made.body.id, tools: [{ type: 'code_interpreter', mode: 'on' }], inputs: [{ role: 'user', content: probe.MODEL_QUESTION }] },
      timeoutS: Math.max(options.requestTimeoutS, 300),
    })
    if (reply.status === 503 && reply.body?.error?.code === 'model_not_configured') {
      return void add('model response', 'n/a', 'no model configured (the server answered 503 model_not_configured)', reply.ms)
    }
    if (reply.status !== 200) return void add('model response', 'fail', explain(reply), reply.ms)
    const response = reply.body
    if (typeof response?.session_id === 'string') cleanup.push({ what: 'session', path: `/v1/sessions/${response.session_id}` })
    const output = Array.isArray(response?.output) ? response.output : []
    const calls = output.filter((o: any) => o.type === 'code_interpreter_call')
    const message = output.filter((o: any) => o.type === 'message').flatMap((m: any) => m.content ?? []).map((c: any) => c.text ?? '').join('')
    const problems: string[] = []
    if (response?.status !== 'completed') problems.push(`status ${response?.status}${response?.error ? ` (${response.error.code}: ${response.error.message})` : ''}${response?.incomplete_details ? ` (${response.incomplete_details.reason})` : ''}`)
    if (!calls.length) problems.push('no code ran (mode "on" requires a code_interpreter_call)')
    else if (!calls.some((c: any) => c.status === 'completed')) problems.push(`no code block completed (${calls.map((c: any) => c.status).join(', ')})`)
    if (!message.trim()) problems.push('no answer text')
    const answer = /38,?696/.test(message) ? ' (the answer names 38,696.84)' : ''
    add(
      'model response',
      problems.length ? 'fail' : 'pass',
      problems.length
        ? `${response?.id ?? 'response'} with model ${response?.model ?? '?'}: ${problems.join('; ')}`
        : `${response.id}: model ${response.model}, ${calls.length} code block(s), ${response.usage?.total_tokens ?? '?'} tokens; "${clip(message.trim(), 100)}"${answer}`,
      reply.ms,
    )
  }

  async function removeWhatWasMade() {
    if (!cleanup.length) return
    const left: string[] = []
    // Assistants and files first, sessions last (a session's files are listed on it).
    for (const item of cleanup.reverse()) {
      try {
        const reply = await call('DELETE', item.path, { timeoutS: 30 })
        if (reply.status !== 200 && reply.status !== 204 && reply.status !== 404) left.push(`${item.what} ${item.path} (HTTP ${reply.status})`)
      } catch (error) {
        left.push(`${item.what} ${item.path} (${(error as Error).message})`)
      }
    }
    const counts = new Map<string, number>()
    for (const item of cleanup) counts.set(item.what, (counts.get(item.what) ?? 0) + 1)
    const made = [...counts].map(([what, n]) => `${n} ${what}${n > 1 ? 's' : ''}`).join(', ')
    add('cleanup', 'info', left.length ? `could not delete: ${left.join('; ')}` : `deleted what the run made: ${made}`)
  }
}
