import { type ChildProcess, spawn } from 'node:child_process'
import { encodeMessage, MessageReader } from './frames'
import { LambdaWorker } from './lambda-worker'

export interface WorkerReply {
  result?: unknown
  /** A function error, as Lambda answers it (errorType, errorMessage, and e.g. stackTrace). */
  error?: { errorType: string; errorMessage: string; [field: string]: unknown }
  /** Lambda posture: the response bytes exactly as the runtime posted them. */
  payload?: Buffer
}

/**
 * How workers run (README "Configuration"): root (blocks under per-slot uids, namespaces),
 * deployed (one non-root uid per worker, every layer required), lambda (each worker in an emulated
 * Lambda environment, driven through the Runtime API).
 */
export type Posture = 'root' | 'deployed' | 'lambda'

export interface PoolOptions {
  python: string
  script: string
  size: number
  /** Requests that may wait for a worker; past it, invoke() throws PoolFullError. */
  queueLimit: number
  /** Environment for the workers (never the server's own credentials). */
  env: Record<string, string>
  /** Root posture: worker slot i runs blocks as uids slotUidBase + 8i .. + 8i + 7. */
  slotUidBase: number
  /**
   * Deployed and lambda postures: worker slot i runs as the non-root uid workerUidBase + i
   * (runner and blocks alike) and is that uid's only tenant. Needs root to set.
   */
  workerUidBase?: number
  /** @default deployed when workerUidBase is set, else root */
  posture?: Posture
  /** Lambda posture: each worker is emulation/lambda_env.py (as root) and has its own Runtime API. */
  lambda?: {
    /** python-runtime/emulation/lambda_env.py */
    script: string
    functionName: string
    /** The function's timeout: each invocation's deadline; past it the environment is reset. */
    timeoutMs: number
  }
  log: (line: string) => void
}

export class PoolFullError extends Error {
  constructor() {
    super('all sandbox workers are busy and the queue is full')
    this.name = 'PoolFullError'
  }
}

export interface Job {
  payload: unknown
  tenant: string
  resolve: (reply: WorkerReply) => void
}

/** busy: running a block; cleaning: replied, cleaning up before it takes another block. */
export type WorkerState = 'starting' | 'idle' | 'busy' | 'cleaning' | 'recycling' | 'dead'

/** One warm sandbox environment as the pool schedules it. */
export interface PoolWorker {
  readonly slot: number
  state: WorkerState
  /** Set when this worker is being recycled for another organization: its replacement serves it. */
  reservedFor: string | null
  /** Like Lambda's tenant isolation mode: a worker serves one organization for its whole life. */
  tenant: string | null
  /** When it last became idle (performance.now()). */
  idleSince: number
  /** Isolation layers the runner reports, and those refused with the reason. */
  layers: Record<string, unknown>
  refused: Record<string, string>
  /** The zygote's report: Python and package versions. */
  runtime: Record<string, unknown>
  /** Resolves when it can take a block; rejects when start-up fails (fail closed). */
  readonly ready: Promise<void>
  readonly pid: number | undefined
  send(job: Job): void
  /** Kills it at once (recycling). */
  stop(): void
  /** Lets it clean up, killing it after graceMs. */
  shutdown(graceMs: number): Promise<void>
}

const MAX_REPLY_BYTES = 8 * 1024 * 1024

/** A worker driven over stdin/stdout frames (python-runtime/local_worker.py): root and deployed. */
class Worker implements PoolWorker {
  state: WorkerState = 'starting'
  reservedFor: string | null = null
  tenant: string | null = null
  job: Job | null = null
  layers: Record<string, unknown> = {}
  refused: Record<string, string> = {}
  runtime: Record<string, unknown> = {}
  readonly proc: ChildProcess
  readonly ready: Promise<void>

  constructor(
    readonly slot: number,
    private readonly pool: WorkerPool,
    options: PoolOptions,
  ) {
    const uid = options.workerUidBase === undefined ? undefined : options.workerUidBase + slot
    // A uid of its own: the runner is its only tenant, so it may sweep the uid and wipe its files.
    const deployed = uid === undefined ? {} : { SANDBOX_POSTURE: 'deployed', SANDBOX_UID_EXCLUSIVE: '1', SANDBOX_WIPE_TMP: '1' }
    this.proc = spawn(options.python, ['-B', options.script], {
      // Each slot owns 8 uids: one per standby plus the running block (SANDBOX_STANDBYS <= 6).
      env: { ...options.env, SANDBOX_SLOT_UID: String(options.slotUidBase + slot * 8), ...deployed },
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(uid === undefined ? {} : { uid, gid: uid }),
    })
    const reader = new MessageReader(MAX_REPLY_BYTES)
    let settle: { resolve: () => void; reject: (e: Error) => void }
    this.ready = new Promise((resolve, reject) => (settle = { resolve, reject }))
    this.ready.catch(() => {})
    this.proc.stderr!.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) options.log(`[sandbox ${slot}] ${line}`)
    })
    this.proc.stdout!.on('data', (chunk: Buffer) => {
      let messages: unknown[]
      try {
        messages = reader.feed(chunk)
      } catch (error) {
        options.log(`[sandbox ${slot}] ${(error as Error).message}; recycling`)
        this.proc.kill('SIGKILL')
        return
      }
      for (const message of messages as Record<string, any>[]) {
        if (message.ready) {
          this.layers = message.ready.layers
          this.refused = message.ready.refused ?? {}
          this.runtime = message.ready.zygote ?? {}
          this.state = 'idle'
          settle.resolve()
          this.pool.dispatch()
        } else if (message.fatal) {
          settle.reject(new Error(String(message.fatal)))
        } else if (message.idle) {
          if (this.state === 'cleaning') {
            this.state = 'idle'
            this.idleSince = performance.now()
            this.pool.dispatch()
          }
        } else if (this.job) {
          const job = this.job
          this.job = null
          this.state = 'cleaning'
          job.resolve(message as WorkerReply)
        }
      }
    })
    this.proc.on('error', (error) => settle.reject(error))
    this.proc.on('exit', (code, signal) => {
      const wasStarting = this.state === 'starting'
      this.state = 'dead'
      settle.reject(new Error(`sandbox worker exited during start-up (code ${code}, signal ${signal})`))
      if (this.job) {
        this.job.resolve({
          error: { errorType: 'SandboxWorkerExited', errorMessage: 'the sandbox environment ended while running the block' },
        })
        this.job = null
      }
      this.pool.replace(this, wasStarting)
    })
  }

  idleSince = 0

  get pid(): number | undefined {
    return this.proc.pid
  }

  send(job: Job): void {
    this.state = 'busy'
    this.tenant = job.tenant
    this.job = job
    this.proc.stdin!.write(encodeMessage({ payload: job.payload, tenant_id: job.tenant }))
  }

  stop(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL')
  }

  /** Closes its input so the runner cleans up (zygote, standbys, scratch); kills it if it lingers. */
  async shutdown(graceMs: number): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return
    const exited = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()))
    this.proc.stdin!.end()
    const timer = setTimeout(() => this.stop(), graceMs)
    await exited
    clearTimeout(timer)
  }
}

/** Warm Python sandbox workers behind the local Lambda endpoint. */
export class WorkerPool {
  private workers: PoolWorker[] = []
  private queue: Job[] = []
  private stopping = false
  private failures = 0

  constructor(private readonly options: PoolOptions) {
    this.posture = options.posture ?? (options.workerUidBase === undefined ? 'root' : 'deployed')
    if (this.posture === 'lambda' && (!options.lambda || options.workerUidBase === undefined)) {
      throw new Error('the lambda posture needs the emulation script and a worker uid base')
    }
  }

  readonly posture: Posture

  /** Starts every worker and resolves with the isolation layers they report (fails closed). */
  async start(): Promise<Record<string, unknown>> {
    this.workers = Array.from({ length: this.options.size }, (_, slot) => this.spawn(slot))
    await Promise.all(this.workers.map((w) => w.ready))
    return this.workers[0]!.layers
  }

  private spawn(slot: number): PoolWorker {
    return this.posture === 'lambda' ? new LambdaWorker(slot, this, this.options) : new Worker(slot, this, this.options)
  }

  invoke(payload: unknown, tenant: string): Promise<WorkerReply> {
    return new Promise((resolve, reject) => {
      const job: Job = { payload, tenant, resolve }
      if (this.assign(job)) return
      if (this.queue.length >= this.options.queueLimit) return reject(new PoolFullError())
      this.queue.push(job)
    })
  }

  /** Hands queued jobs to free workers, oldest first. */
  dispatch(): void {
    this.queue = this.queue.filter((job) => !this.assign(job))
  }

  private assign(job: Job): boolean {
    // The worker idle the longest first: its standbys are the most likely to be ready.
    const idle = this.workers.filter((w) => w.state === 'idle').sort((a, b) => a.idleSince - b.idleSince)
    const worker = idle.find((w) => w.tenant === job.tenant) ?? idle.find((w) => w.tenant === null)
    if (worker) {
      worker.send(job)
      return true
    }
    // A fresh worker is already on its way for this tenant (or for anyone): wait for it.
    const coming = this.workers.some(
      (w) =>
        // A worker of this tenant that is only cleaning up is free in milliseconds; a busy one may
        // run for 30 s, so then another tenant's idle worker is recycled (Lambda would scale out).
        (w.state === 'starting' && (w.tenant === job.tenant || w.tenant === null)) ||
        (w.state === 'cleaning' && w.tenant === job.tenant) ||
        (w.state === 'recycling' && w.reservedFor === job.tenant),
    )
    const other = idle[0]
    if (!coming && other) {
      // Recycle a worker that served another organization before it serves this one.
      other.reservedFor = job.tenant
      other.state = 'recycling'
      other.stop()
    }
    return false
  }

  replace(dead: PoolWorker, wasStarting: boolean): void {
    if (this.stopping) return
    const index = this.workers.indexOf(dead)
    if (index < 0) return
    this.failures = wasStarting ? this.failures + 1 : 0
    const delay = Math.min(5_000, this.failures * 500)
    setTimeout(() => {
      if (this.stopping) return
      const fresh = this.spawn(dead.slot)
      // A recycled slot is promised to the tenant that asked for it.
      fresh.tenant = dead.reservedFor
      this.workers[index] = fresh
      fresh.ready.then(
        () => (this.failures = 0),
        (error: Error) => this.options.log(`sandbox worker ${dead.slot} failed to start: ${error.message}`),
      )
    }, delay)
  }

  /** The Python runtime the workers report (version, package versions). */
  runtime(): Record<string, unknown> {
    return this.workers.find((w) => w.state !== 'dead')?.runtime ?? {}
  }

  /** Isolation layers the runner attempted and the kernel (or Lambda) refused, with the reason. */
  refused(): Record<string, string> {
    return this.workers.find((w) => w.state !== 'dead')?.refused ?? {}
  }

  /** Process ids of the live workers (runners), for tests and the benchmark. */
  workerPids(): number[] {
    return this.workers.filter((w) => w.state !== 'dead' && w.pid).map((w) => w.pid!)
  }

  get size(): number {
    return this.workers.length
  }

  stats(): { idle: number; busy: number; cleaning: number; starting: number; queued: number } {
    const count = (s: WorkerState) => this.workers.filter((w) => w.state === s).length
    return { idle: count('idle'), busy: count('busy'), cleaning: count('cleaning'), starting: count('starting'), queued: this.queue.length }
  }

  async stop(): Promise<void> {
    this.stopping = true
    for (const job of this.queue) job.resolve({ error: { errorType: 'ServerStopping', errorMessage: 'the server is stopping' } })
    this.queue = []
    await Promise.all(this.workers.map((w) => w.shutdown(2_000)))
  }
}
