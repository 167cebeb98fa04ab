import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { WorkerPool } from '../../functions/local/worker-pool'

// The pool's lambda posture with real processes: each worker is an environment script that execs
// python-runtime/emulation/runtime_client.py (here with a toy handler instead of sandbox.runner,
// and without lambda_env.py's emulation, which test/integration/lambda-posture.test.ts covers),
// polling the worker's own Runtime API server.

const CLIENT = join(import.meta.dirname, '..', '..', 'python-runtime', 'emulation', 'runtime_client.py')
const PYTHON = process.env.PYTHON ?? '/usr/bin/python3'
const dir = mkdtempSync(join(tmpdir(), 'lambda-worker-'))
const ENV_SCRIPT = join(dir, 'env.py')
writeFileSync(
  ENV_SCRIPT,
  `import os, sys
if os.environ.get("TEST_EXIT"):
    print("lambda emulation: " + os.environ["TEST_EXIT"], file=sys.stderr)
    sys.exit(78)
env = {"PATH": os.environ["PATH"], "AWS_LAMBDA_RUNTIME_API": os.environ["AWS_LAMBDA_RUNTIME_API"],
       "_HANDLER": os.environ["TEST_HANDLER"], "LAMBDA_TASK_ROOT": ${JSON.stringify(dir)},
       "UID_GIVEN": os.environ["SANDBOX_LAMBDA_UID"], "POSTURE_GIVEN": os.environ["SANDBOX_POSTURE"]}
os.execve(sys.executable, [sys.executable, "-B", ${JSON.stringify(CLIENT)}], env)
`,
)
writeFileSync(
  join(dir, 'fn.py'),
  `import os, time
PROBE = {"version": 1, "status": "completed", "outputs": [], "duration_ms": 0,
         "layers": {"posture": "lambda", "clean_env": True, "subreaper": False},
         "refused": {"subreaper": "[Errno 1] Operation not permitted"}, "zygote": {"python": "3.x"}}

def handler(event, context):
    if event.get("action") == "probe":
        assert context.tenant_id is None
        return PROBE
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"event": event, "pid": os.getpid(), "tenant": context.tenant_id,
            "uid": os.environ["UID_GIVEN"], "posture": os.environ["POSTURE_GIVEN"]}

def failing_probe(event, context):
    raise RuntimeError("no layers today")
`,
)
writeFileSync(join(dir, 'broken.py'), 'import no_such_module_for_the_test\n')
afterAll(() => rmSync(dir, { recursive: true, force: true }))

let pool: WorkerPool | undefined
afterEach(async () => {
  await pool?.stop()
  pool = undefined
})

function makePool(env: Record<string, string>, timeoutMs = 10_000) {
  const lines: string[] = []
  pool = new WorkerPool({
    python: PYTHON,
    script: '/nonexistent/local_worker.py',
    size: 1,
    queueLimit: 4,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    slotUidBase: 65_500,
    workerUidBase: 65_400,
    posture: 'lambda',
    lambda: { script: ENV_SCRIPT, functionName: 'sandbox', timeoutMs },
    log: (line) => lines.push(line),
  })
  return { pool, lines }
}

describe.skipIf(process.getuid?.() !== 0)('lambda posture workers (real processes)', () => {
  it('starts with one probe (layers, refused, runtime) and serves invocations with the tenant', async () => {
    const { pool } = makePool({ TEST_HANDLER: 'fn.handler' })
    const layers = await pool.start()
    expect(layers).toEqual({ posture: 'lambda', clean_env: true, subreaper: false })
    expect(pool.refused()).toEqual({ subreaper: '[Errno 1] Operation not permitted' })
    expect(pool.runtime()).toEqual({ python: '3.x' })
    expect(pool.stats()).toMatchObject({ idle: 1, busy: 0 })
    const reply = await pool.invoke({ code: 'x' }, 'org_a')
    expect(reply.result).toMatchObject({ event: { code: 'x' }, tenant: 'org_a', uid: '65400', posture: 'lambda' })
    expect((reply.result as { pid: number }).pid).toBe(pool.workerPids()[0])
    await new Promise((r) => setTimeout(r, 100))
    expect(pool.stats()).toMatchObject({ idle: 1, busy: 0, cleaning: 0 })
  })

  it('resets the environment at the function timeout: Sandbox.Timedout, then a fresh worker', async () => {
    const { pool, lines } = makePool({ TEST_HANDLER: 'fn.handler' }, 1_000)
    await pool.start()
    const [before] = pool.workerPids()
    const reply = await pool.invoke({ sleep: 30 }, 'org_a')
    expect(reply.error).toMatchObject({ errorType: 'Sandbox.Timedout' })
    expect(reply.error!.errorMessage).toMatch(/^RequestId: [0-9a-f-]{36} Error: Task timed out after 1\.00 seconds$/)
    expect(lines.some((l) => l.includes('timed out after 1000 ms; resetting the environment'))).toBe(true)
    let after
    for (let i = 0; i < 50; i++) {
      after = await pool.invoke({ n: 1 }, 'org_a')
      if (after.result) break
      await new Promise((r) => setTimeout(r, 200))
    }
    expect((after!.result as { pid: number }).pid).not.toBe(before)
  })

  it('fails start-up with the init error the runtime posts', async () => {
    const { pool } = makePool({ TEST_HANDLER: 'broken.handler' })
    await expect(pool.start()).rejects.toThrow(
      "Unable to import module 'broken': No module named 'no_such_module_for_the_test' (Runtime.ImportModuleError)",
    )
  })

  it('fails start-up when the environment exits first, with its reason', async () => {
    const { pool } = makePool({ TEST_HANDLER: 'fn.handler', TEST_EXIT: 'the task root is not read-only' })
    await expect(pool.start()).rejects.toThrow(
      'sandbox worker exited during start-up (code 78, signal null): lambda emulation: the task root is not read-only',
    )
  })

  it('fails start-up when the probe fails', async () => {
    const { pool } = makePool({ TEST_HANDLER: 'fn.failing_probe' })
    await expect(pool.start()).rejects.toThrow('the sandbox probe failed (RuntimeError: no layers today)')
  })
})
