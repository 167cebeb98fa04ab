import { randomBytes, randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { WorkerReply } from './worker-pool'

/**
 * The largest response or error a runtime may post: 6 MiB + 100 bytes, the Runtime Interface
 * Emulator's interop.MaxPayloadSize (aws/aws-lambda-runtime-interface-emulator,
 * internal/lambda/interop/model.go), and the number in Lambda's own Function.ResponseSizeTooLarge.
 */
export const MAX_RUNTIME_PAYLOAD_BYTES = 6 * 1024 * 1024 + 100

const NEXT_PATH = '/2018-06-01/runtime/invocation/next'
const INIT_ERROR_PATH = '/2018-06-01/runtime/init/error'
const INVOCATION_PATH = /^\/2018-06-01\/runtime\/invocation\/([^/]+)\/(response|error)$/
/** The account the emulator puts in invoked function ARNs (internal/lambda/rie/handlers.go). */
const ACCOUNT_ID = '012345678912'

export interface RuntimeApiOptions {
  functionName: string
  region?: string
  log?: (line: string) => void
}

interface Invocation {
  id: string
  body: Buffer
  tenant: string
  timeoutMs: number
  deadlineMs: number
  traceId: string
  timer: NodeJS.Timeout
  resolve: (reply: WorkerReply) => void
  delivered: boolean
  /** A response or error for it is being read: it is the one that counts (the first wins). */
  claimed: 'InvocationResponse' | 'InvocationErrorResponse' | null
}

export interface InitError {
  errorType: string
  errorMessage: string
}

/** Start-up failed: the runtime posted /runtime/init/error, or the environment ended first. */
export class RuntimeInitError extends Error {
  constructor(
    message: string,
    readonly errorType: string,
  ) {
    super(message)
    this.name = 'RuntimeInitError'
  }
}

interface Events {
  /** The first GET /next: init is done. */
  ready: []
  /** A later GET /next with nothing outstanding: the previous invocation is over. */
  idle: []
  initError: [InitError]
  /** An invocation ran past its deadline: Lambda resets such an environment. */
  timeout: [string]
}

/**
 * One execution environment's Runtime API (2018-06-01), on 127.0.0.1 (inside Lambda it is
 * 127.0.0.1:9001 of that environment alone): what awslambdaric polls for invocations and posts
 * results to. Status codes, bodies and error types are those of the Runtime Interface Emulator
 * (aws/aws-lambda-runtime-interface-emulator, internal/lambda/rapi, core/states.go) and the
 * OpenAPI spec of AWS "Using the Lambda runtime API for custom runtimes":
 *
 * - GET /runtime/invocation/next: 200 with the event and the Lambda-Runtime-* headers, held open
 *   until there is an invocation; 403 InvalidStateTransition while another /next waits, while an
 *   invocation is in flight (the emulator delivers the same event again; here one runtime gets
 *   one event once), and after an init error.
 * - POST /runtime/invocation/{id}/response and /error: 202 {"status":"OK"}; 403
 *   InvalidStateTransition when no invocation is in flight (before the first, after it was
 *   answered or timed out: a second answer never replaces the first); 400 InvalidRequestID
 *   "Invalid request ID" for another id while one is in flight; 413 RequestEntityTooLarge over
 *   6 MiB + 100 bytes, and the invoker gets Function.ResponseSizeTooLarge.
 * - POST /runtime/init/error: 202 before the first /next, then the error answers start-up (and
 *   any invocation waiting); 403 InvalidStateTransition after it.
 *
 * Exactly one invocation is outstanding at a time; invoke() answers with the first accepted
 * response or error, a Lambda-style Sandbox.Timedout error at its deadline, or Runtime.ExitError
 * when the environment ends under it.
 */
export class RuntimeApi extends EventEmitter<Events> {
  /** Resolves at the first GET /next; rejects on an init error or an end before it. */
  readonly ready: Promise<void>
  /** TCP connections accepted so far (awslambdaric keeps one alive). */
  connections = 0
  private readonly server: Server
  private readonly sockets = new Set<Socket>()
  private readonly arn: string
  private settleReady!: { resolve: () => void; reject: (error: Error) => void }
  private initialized = false
  private initError: InitError | null = null
  private closed = false
  private parked: ServerResponse | null = null
  private current: Invocation | null = null

  constructor(private readonly options: RuntimeApiOptions) {
    super()
    this.arn = `arn:aws:lambda:${options.region ?? 'us-east-1'}:${ACCOUNT_ID}:function:${options.functionName}`
    this.ready = new Promise((resolve, reject) => (this.settleReady = { resolve, reject }))
    this.ready.catch(() => {})
    this.server = createServer((req, res) => this.route(req, res))
    // /next is held open for as long as there is no invocation, and the connection idles while
    // the handler runs: no keep-alive timeout, like the Runtime API.
    this.server.keepAliveTimeout = 0
    this.server.on('connection', (socket) => {
      this.connections += 1
      this.sockets.add(socket)
      socket.once('close', () => this.sockets.delete(socket))
    })
  }

  /** Listens on 127.0.0.1 at a free port. */
  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(0, '127.0.0.1', () => resolve())
    })
  }

  /** host:port, the value of AWS_LAMBDA_RUNTIME_API. */
  get address(): string {
    return `127.0.0.1:${(this.server.address() as AddressInfo).port}`
  }

  /** A GET /next is waiting and nothing is outstanding. */
  get waiting(): boolean {
    return this.parked !== null && this.current === null
  }

  /** Runs one invocation; the payload is the event, tenant ('' for none) its tenant id. */
  invoke(payload: unknown, tenant: string, timeoutMs: number): Promise<WorkerReply> {
    if (this.current) return Promise.reject(new Error('an invocation is already in flight in this environment'))
    if (this.initError) return Promise.resolve({ error: { ...this.initError } })
    if (this.closed) {
      return Promise.resolve({ error: { errorType: 'Runtime.ExitError', errorMessage: 'Error: Runtime exited' } })
    }
    return new Promise((resolve) => {
      const id = randomUUID()
      const invocation: Invocation = {
        id,
        body: Buffer.from(JSON.stringify(payload)),
        tenant,
        timeoutMs,
        deadlineMs: Date.now() + timeoutMs,
        traceId: traceId(),
        timer: setTimeout(() => this.timeOut(invocation), timeoutMs),
        resolve,
        delivered: false,
        claimed: null,
      }
      this.current = invocation
      if (this.parked) this.deliver()
    })
  }

  /** The environment's process ended: answers what is in flight as Lambda does, then closes. */
  environmentExited(code: number | null, signal: NodeJS.Signals | null): void {
    const how = signal ? `signal: ${SIGNAL_TEXT[signal] ?? signal}` : `exit status ${code}`
    const current = this.current
    if (current) {
      this.finish(current, {
        error: { errorType: 'Runtime.ExitError', errorMessage: `RequestId: ${current.id} Error: Runtime exited with error: ${how}` },
      })
    }
    if (!this.initialized && !this.initError) {
      this.settleReady.reject(new RuntimeInitError(`Runtime exited with error: ${how}`, 'Runtime.ExitError'))
    }
    this.close()
  }

  close(): Promise<void> {
    this.closed = true
    if (this.current) {
      this.finish(this.current, { error: { errorType: 'Runtime.ExitError', errorMessage: 'Error: the environment was shut down' } })
    }
    this.settleReady.reject(new RuntimeInitError('the environment was shut down before it was ready', 'Runtime.ExitError'))
    this.parked = null
    for (const socket of this.sockets) socket.destroy()
    return new Promise((resolve) => (this.server.listening ? this.server.close(() => resolve()) : resolve()))
  }

  // --- requests --------------------------------------------------------------------------------

  private route(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '').split('?')[0]!
    const invocation = path.match(INVOCATION_PATH)
    const known = path === NEXT_PATH || path === INIT_ERROR_PATH || invocation !== null
    if (!known) return reply(res, 404, { errorMessage: 'Not Found', errorType: 'NotFound' })
    const method = path === NEXT_PATH ? 'GET' : 'POST'
    if (req.method !== method) return reply(res, 405, { errorMessage: 'Method Not Allowed', errorType: 'MethodNotAllowed' })
    if (path === NEXT_PATH) return this.next(res)
    if (path === INIT_ERROR_PATH) return void this.postInitError(req, res)
    const kind = invocation![2] === 'response' ? 'InvocationResponse' : 'InvocationErrorResponse'
    void this.postAnswer(req, res, decodeURIComponent(invocation![1]!), kind)
  }

  private next(res: ServerResponse): void {
    if (this.closed || this.initError || this.parked || this.current?.delivered) {
      return this.forbidden(res, 'Ready')
    }
    this.parked = res
    res.once('close', () => {
      if (this.parked === res) this.parked = null
    })
    const first = !this.initialized
    this.initialized = true
    if (first) this.settleReady.resolve()
    if (this.current && !this.current.delivered) return this.deliver()
    this.emit(first ? 'ready' : 'idle')
  }

  private deliver(): void {
    const invocation = this.current!
    const res = this.parked!
    this.parked = null
    invocation.delivered = true
    const headers: Record<string, string> = {
      'Content-Type': 'application/json',
      'Lambda-Runtime-Aws-Request-Id': invocation.id,
      'Lambda-Runtime-Deadline-Ms': String(invocation.deadlineMs),
      'Lambda-Runtime-Invoked-Function-Arn': this.arn,
      'Lambda-Runtime-Trace-Id': invocation.traceId,
      'Content-Length': String(invocation.body.length),
    }
    // Set only when the invocation has a tenant, as the emulator does (setHeaderIfNotEmpty).
    if (invocation.tenant) headers['Lambda-Runtime-Aws-Tenant-Id'] = invocation.tenant
    res.writeHead(200, headers)
    res.end(invocation.body)
  }

  private async postAnswer(
    req: IncomingMessage,
    res: ServerResponse,
    id: string,
    kind: 'InvocationResponse' | 'InvocationErrorResponse',
  ): Promise<void> {
    const invocation = this.current
    // The state machine first (core/states.go), then the id (rapidcore/server.go), as the emulator.
    if (this.closed || !invocation || !invocation.delivered || invocation.claimed) return this.forbidden(res, kind)
    if (id !== invocation.id) return reply(res, 400, { errorMessage: 'Invalid request ID', errorType: 'InvalidRequestID' })
    invocation.claimed = kind
    const body = await readBody(req, MAX_RUNTIME_PAYLOAD_BYTES)
    if (this.current !== invocation) return this.forbidden(res, kind) // timed out, or the environment ended
    if (!body.complete) {
      this.finish(invocation, { error: { errorType: 'Runtime.TruncatedResponse', errorMessage: 'HTTP request detected as truncated' } })
      return reply(res, 400, { errorMessage: 'HTTP request detected as truncated', errorType: 'TruncatedHTTPRequest' })
    }
    if (body.data === null) {
      this.finish(invocation, {
        error: {
          errorType: 'Function.ResponseSizeTooLarge',
          errorMessage: `Response payload size (${body.size} bytes) exceeded maximum allowed payload size (${MAX_RUNTIME_PAYLOAD_BYTES} bytes).`,
        },
      })
      return reply(res, 413, {
        errorMessage: `Exceeded maximum allowed payload size (${MAX_RUNTIME_PAYLOAD_BYTES} bytes).`,
        errorType: 'RequestEntityTooLarge',
      })
    }
    if (kind === 'InvocationResponse') {
      // The invoker gets these bytes as they are; `result` is there when they are JSON.
      this.finish(invocation, { result: parseJson(body.data), payload: body.data })
    } else {
      this.finish(invocation, { error: functionError(body.data, req.headers['lambda-runtime-function-error-type']) })
    }
    reply(res, 202, { status: 'OK' })
  }

  private async postInitError(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.closed || this.initialized || this.initError) return this.forbidden(res, 'InitError')
    const body = await readBody(req, MAX_RUNTIME_PAYLOAD_BYTES)
    if (this.closed || this.initialized || this.initError) return this.forbidden(res, 'InitError')
    const error = functionError(body.data ?? Buffer.alloc(0), req.headers['lambda-runtime-function-error-type'])
    this.initError = { errorType: error.errorType, errorMessage: error.errorMessage }
    reply(res, 202, { status: 'OK' })
    this.options.log?.(`runtime init error: ${error.errorType}: ${error.errorMessage}`)
    this.settleReady.reject(new RuntimeInitError(`${error.errorMessage} (${error.errorType})`, error.errorType))
    // "Error will be served in response to the first invoke."
    if (this.current) this.finish(this.current, { error: { ...this.initError } })
    this.emit('initError', this.initError)
  }

  // --- answers -------------------------------------------------------------------------------

  private finish(invocation: Invocation, answer: WorkerReply): void {
    clearTimeout(invocation.timer)
    if (this.current === invocation) this.current = null
    invocation.resolve(answer)
  }

  private timeOut(invocation: Invocation): void {
    if (this.current !== invocation) return
    const seconds = (invocation.timeoutMs / 1000).toFixed(2)
    this.finish(invocation, {
      error: { errorType: 'Sandbox.Timedout', errorMessage: `RequestId: ${invocation.id} Error: Task timed out after ${seconds} seconds` },
    })
    this.emit('timeout', invocation.id)
  }

  private stateName(): string {
    if (this.initError) return 'InitError'
    if (this.current?.claimed) return this.current.claimed
    if (this.current?.delivered) return 'Running'
    if (!this.initialized) return 'Started'
    return this.parked ? 'Ready' : 'RuntimeResponseSentState'
  }

  private forbidden(res: ServerResponse, to: string): void {
    reply(res, 403, {
      errorMessage: `State transition from ${this.stateName()} to ${to} failed for runtime. Error: State transition is not allowed`,
      errorType: 'InvalidStateTransition',
    })
  }
}

const SIGNAL_TEXT: Partial<Record<NodeJS.Signals, string>> = {
  SIGKILL: 'killed',
  SIGTERM: 'terminated',
  SIGSEGV: 'segmentation fault',
  SIGABRT: 'aborted',
  SIGBUS: 'bus error',
  SIGINT: 'interrupt',
}

/** X-Ray's trace header format: Root=1-<epoch seconds, hex>-<96 random bits>;Parent=<64 bits>. */
function traceId(): string {
  const epoch = Math.floor(Date.now() / 1000).toString(16).padStart(8, '0')
  return `Root=1-${epoch}-${randomBytes(12).toString('hex')};Parent=${randomBytes(8).toString('hex')};Sampled=0`
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const data = Buffer.from(JSON.stringify(body) + '\n')
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': String(data.length) })
  res.end(data)
}

/** The body, or null past the limit (its size still counted); complete is false if it was cut off. */
function readBody(req: IncomingMessage, limit: number): Promise<{ data: Buffer | null; size: number; complete: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size <= limit) chunks.push(chunk)
    })
    req.on('end', () => resolve({ data: size <= limit ? Buffer.concat(chunks) : null, size, complete: true }))
    req.on('close', () => resolve({ data: null, size, complete: req.complete }))
    req.on('error', () => resolve({ data: null, size, complete: false }))
  })
}

function parseJson(data: Buffer): unknown {
  try {
    return JSON.parse(data.toString('utf8'))
  } catch {
    return undefined
  }
}

/** The emulator's fatalerror.GetValidRuntimeOrFunctionErrorType, for the error-type header. */
function validErrorType(header: string | string[] | undefined): string {
  const value = Array.isArray(header) ? header[0] : header
  if (value && /(Runtime|Function)\.[A-Z][a-zA-Z]+/.test(value)) return value
  return value?.startsWith('Function.') ? 'Function.Unknown' : 'Runtime.Unknown'
}

/** A posted error: its JSON object ({errorMessage, errorType, stackTrace, ...}) when it is one,
 *  else built from the Lambda-Runtime-Function-Error-Type header ("Lambda's default behavior"). */
function functionError(data: Buffer, header: string | string[] | undefined): NonNullable<WorkerReply['error']> {
  const parsed = parseJson(data)
  if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
    const error = parsed as Record<string, unknown>
    return {
      ...error,
      errorType: typeof error.errorType === 'string' && error.errorType ? error.errorType : validErrorType(header),
      errorMessage: typeof error.errorMessage === 'string' ? error.errorMessage : '',
    }
  }
  return { errorType: validErrorType(header), errorMessage: data.toString('utf8').slice(0, 4096) }
}
