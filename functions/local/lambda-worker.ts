import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { lstatSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { RuntimeApi } from './runtime-api'
import type { Job, PoolOptions, PoolWorker, WorkerPool, WorkerReply, WorkerState } from './worker-pool'

/** What the pool asks a new environment first: its isolation layers and runtime (no tenant). */
const PROBE = { version: 1, request_id: 'probe', code: '', action: 'probe' } as const
const STDERR_LINES_KEPT = 5

/**
 * The lambda posture's worker: one emulated Lambda execution environment. It spawns, as root,
 * `python -B emulation/lambda_env.py`, which builds the environment (read-only mounts but /tmp,
 * Lambda's seccomp refusals and variables), drops to the uid workerUidBase + slot and execs
 * emulation/runtime_client.py; that client imports sandbox.runner (starting the runner) and polls
 * this worker's own Runtime API server, as awslambdaric does inside Lambda. Ready at the first
 * GET /next and one probe invocation; idle at each GET /next after an answer. An invocation past
 * the function's timeout resets the environment (the process and every process of its uid are
 * killed), as Lambda does.
 */
export class LambdaWorker implements PoolWorker {
  state: WorkerState = 'starting'
  reservedFor: string | null = null
  tenant: string | null = null
  idleSince = 0
  layers: Record<string, unknown> = {}
  refused: Record<string, string> = {}
  runtime: Record<string, unknown> = {}
  readonly ready: Promise<void>
  private proc: ChildProcess | null = null
  private exited: Promise<void> | null = null
  private job: Job | null = null
  private readonly api: RuntimeApi
  private readonly uid: number
  private readonly timeoutMs: number
  private readonly stderrTail: string[] = []
  private settle!: { resolve: () => void; reject: (error: Error) => void }
  private stopping = false

  constructor(
    readonly slot: number,
    private readonly pool: WorkerPool,
    private readonly options: PoolOptions,
  ) {
    const lambda = options.lambda!
    this.uid = options.workerUidBase! + slot
    this.timeoutMs = lambda.timeoutMs
    this.api = new RuntimeApi({ functionName: lambda.functionName, log: (line) => options.log(`[sandbox ${slot}] ${line}`) })
    this.ready = new Promise((resolve, reject) => (this.settle = { resolve, reject }))
    this.ready.catch(() => {})
    this.api.once('initError', (error) => this.fail(new Error(`${error.errorMessage} (${error.errorType})`)))
    this.api.once('ready', () => this.probe())
    this.api.on('idle', () => this.becameIdle())
    this.api.on('timeout', (requestId) => {
      options.log(`[sandbox ${slot}] invocation ${requestId} timed out after ${this.timeoutMs} ms; resetting the environment`)
      this.stop()
    })
    this.api.listen().then(
      () => this.launch(),
      (error: Error) => this.fail(error),
    )
  }

  get pid(): number | undefined {
    return this.proc?.pid
  }

  send(job: Job): void {
    this.state = 'busy'
    this.tenant = job.tenant
    this.job = job
    this.api.invoke(job.payload, job.tenant, this.timeoutMs).then(
      (reply) => this.answered(job, reply),
      (error: Error) => this.answered(job, { error: { errorType: 'ServiceException', errorMessage: error.message } }),
    )
  }

  stop(): void {
    this.stopping = true
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL')
  }

  /** As Lambda shuts an environment down: SIGTERM, then SIGKILL after the grace period. */
  async shutdown(graceMs: number): Promise<void> {
    this.stopping = true
    if (this.proc && this.exited && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM')
      const timer = setTimeout(() => this.stop(), graceMs)
      await this.exited
      clearTimeout(timer)
    } else {
      await this.exited
    }
    await this.api.close()
  }

  private launch(): void {
    if (this.stopping) return void this.api.close()
    const lambda = this.options.lambda!
    // As root: lambda_env.py needs it to build the environment; it then drops to the uid.
    const proc = spawn(this.options.python, ['-B', lambda.script], {
      env: {
        ...this.options.env,
        AWS_LAMBDA_RUNTIME_API: this.api.address,
        SANDBOX_LAMBDA_UID: String(this.uid),
        SANDBOX_POSTURE: 'lambda',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.proc = proc
    const log = (chunk: Buffer, keep: boolean) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line.trim()) continue
        this.options.log(`[sandbox ${this.slot}] ${line}`)
        if (keep) this.stderrTail.splice(0, Math.max(0, this.stderrTail.push(line) - STDERR_LINES_KEPT))
      }
    }
    proc.stdout!.on('data', (chunk: Buffer) => log(chunk, false))
    proc.stderr!.on('data', (chunk: Buffer) => log(chunk, true))
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => void this.ended(code, signal).finally(resolve))
      proc.once('error', (error) => {
        this.fail(error)
        // Never started (e.g. no such interpreter): there will be no 'exit'.
        if (proc.pid === undefined) void this.ended(null, null).finally(resolve)
      })
    })
  }

  private async ended(code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    const wasStarting = this.state === 'starting'
    this.state = 'dead'
    // Answers an invocation in flight (Runtime.ExitError), then closes this environment's API.
    this.api.environmentExited(code, signal)
    if (wasStarting) {
      // Why it ended is on stderr (lambda_env.py exits 78 with the reason): read it to the end.
      await Promise.race([once(this.proc!.stderr!, 'end').catch(() => {}), sleep(200)])
    }
    const tail = this.stderrTail.at(-1)
    this.fail(new Error(`sandbox worker exited during start-up (code ${code}, signal ${signal})${tail ? `: ${tail}` : ''}`))
    // As when Lambda ends an environment, nothing of its uid outlives it: no process (inside
    // Lambda the zygote has no parent-death signal, and a block may have left some behind), no
    // file in /tmp (the next environment of this uid, maybe for another tenant, starts empty).
    try {
      await killUid(this.uid)
      wipeUidTmp(this.uid)
    } catch (error) {
      this.options.log(`[sandbox ${this.slot}] ${(error as Error).message}`)
    }
    this.pool.replace(this, wasStarting)
  }

  /** The runtime is polling: one probe invocation tells the layers and the runtime. */
  private probe(): void {
    this.api.invoke(PROBE, '', this.timeoutMs).then((reply) => {
      if (this.state === 'dead') return // ended() tells why
      const result = reply.result as Record<string, any> | undefined
      if (reply.error || !result || typeof result.layers !== 'object' || result.layers === null) {
        const why = reply.error ? `${reply.error.errorType}: ${reply.error.errorMessage}` : 'no layers in its answer'
        this.fail(new Error(`the sandbox probe failed (${why})`))
        return this.stop()
      }
      this.layers = result.layers
      this.refused = result.refused ?? {}
      this.runtime = result.zygote ?? {}
      this.state = 'cleaning'
      if (this.api.waiting) this.becameIdle()
    })
  }

  private answered(job: Job, reply: WorkerReply): void {
    if (this.job !== job) return
    this.job = null
    if (this.state === 'busy') this.state = 'cleaning'
    job.resolve(reply)
    if (this.state === 'cleaning' && this.api.waiting) this.becameIdle()
  }

  private becameIdle(): void {
    if (this.state !== 'cleaning') return
    this.state = 'idle'
    this.idleSince = performance.now()
    this.settle.resolve()
    this.pool.dispatch()
  }

  private fail(error: Error): void {
    this.settle.reject(error)
  }
}

/** Real uid of a process, or null if it is gone or a zombie. */
function processUid(pid: string): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    if (/^State:\s*[ZX]/m.test(status)) return null
    const uid = status.match(/^Uid:\s*(\d+)/m)
    return uid ? Number(uid[1]) : null
  } catch {
    return null
  }
}

/** Kills every process of the uid (a worker's own uid: it is the only tenant). */
export async function killUid(uid: number): Promise<void> {
  for (let round = 0; round < 100; round++) {
    const alive = readdirSync('/proc').filter((entry) => /^\d+$/.test(entry) && processUid(entry) === uid)
    if (alive.length === 0) return
    for (const pid of alive) {
      try {
        process.kill(Number(pid), 'SIGKILL')
      } catch {
        /* gone meanwhile */
      }
    }
    await sleep(10)
  }
  throw new Error(`processes of uid ${uid} survive`)
}

/** Removes what the uid left at the top of /tmp (the only writable place in the environment). */
export function wipeUidTmp(uid: number, tmp = '/tmp'): void {
  for (const entry of readdirSync(tmp)) {
    const path = join(tmp, entry)
    try {
      if (lstatSync(path).uid === uid) rmSync(path, { recursive: true, force: true })
    } catch {
      /* gone meanwhile */
    }
  }
}
