import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { MAX_RUNTIME_PAYLOAD_BYTES, RuntimeApi, RuntimeInitError } from '../../functions/local/runtime-api'

// The Runtime API of one emulated Lambda environment, driven with real HTTP as a runtime would,
// then by the Python runtime client stand-in (python-runtime/emulation/runtime_client.py).

const BASE = '/2018-06-01/runtime'
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

let api: RuntimeApi
afterEach(async () => {
  await api?.close()
})

function start(): Promise<RuntimeApi> {
  api = new RuntimeApi({ functionName: 'sandbox' })
  return api.listen().then(() => api)
}

async function call(method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}) {
  const res = await fetch(`http://${api.address}${BASE}${path}`, { method, body, headers })
  const text = await res.text()
  let json: any
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: res.status, headers: res.headers, text, json }
}

/** GET /next, resolved when an invocation is delivered (or refused). */
const next = () => call('GET', '/invocation/next')

describe('Runtime API (one environment)', () => {
  it('is ready at the first /next and delivers an invocation with the Lambda-Runtime-* headers', async () => {
    await start()
    let readyEvents = 0
    api.on('ready', () => readyEvents++)
    const polling = next()
    await api.ready
    expect(readyEvents).toBe(1)
    expect(api.waiting).toBe(true)
    const before = Date.now()
    const answer = api.invoke({ hello: 'world' }, 'org_a', 5_000)
    const got = await polling
    expect(got.status).toBe(200)
    expect(got.json).toEqual({ hello: 'world' })
    const id = got.headers.get('lambda-runtime-aws-request-id')!
    expect(id).toMatch(UUID)
    const deadline = Number(got.headers.get('lambda-runtime-deadline-ms'))
    expect(deadline).toBeGreaterThanOrEqual(before + 5_000)
    expect(deadline).toBeLessThan(before + 6_000)
    expect(got.headers.get('lambda-runtime-invoked-function-arn')).toBe('arn:aws:lambda:us-east-1:012345678912:function:sandbox')
    expect(got.headers.get('lambda-runtime-trace-id')).toMatch(/^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0$/)
    expect(got.headers.get('lambda-runtime-aws-tenant-id')).toBe('org_a')
    expect(got.headers.get('content-type')).toBe('application/json')

    const posted = await call('POST', `/invocation/${id}/response`, '{"ok": true}')
    expect(posted.status).toBe(202)
    expect(posted.json).toEqual({ status: 'OK' })
    const reply = await answer
    expect(reply.result).toEqual({ ok: true })
    expect(reply.payload?.toString()).toBe('{"ok": true}')

    // The next /next is the environment saying it is idle again.
    let idle = 0
    api.on('idle', () => idle++)
    const again = next()
    await new Promise((r) => setTimeout(r, 50))
    expect(idle).toBe(1)
    expect(api.waiting).toBe(true)
    // An invocation without a tenant has no tenant header.
    const second = api.invoke({ n: 2 }, '', 5_000)
    const delivered = await again
    expect(delivered.headers.has('lambda-runtime-aws-tenant-id')).toBe(false)
    const secondId = delivered.headers.get('lambda-runtime-aws-request-id')!
    expect(secondId).not.toBe(id)
    await call('POST', `/invocation/${secondId}/response`, '{}')
    expect((await second).result).toEqual({})
  })

  it('passes a posted error on as the function error', async () => {
    await start()
    const polling = next()
    await api.ready
    const answer = api.invoke({}, 't', 5_000)
    const id = (await polling).headers.get('lambda-runtime-aws-request-id')!
    const error = { errorMessage: 'boom', errorType: 'ValueError', requestId: id, stackTrace: ['  File "x.py", line 1\n'] }
    const posted = await call('POST', `/invocation/${id}/error`, JSON.stringify(error), {
      'Lambda-Runtime-Function-Error-Type': 'Unhandled',
    })
    expect(posted.status).toBe(202)
    expect(posted.json).toEqual({ status: 'OK' })
    expect((await answer).error).toEqual(error)
  })

  it('builds the error from the error-type header when the body is not an error object', async () => {
    await start()
    const polling = next()
    await api.ready
    const answer = api.invoke({}, '', 5_000)
    const id = (await polling).headers.get('lambda-runtime-aws-request-id')!
    await call('POST', `/invocation/${id}/error`, 'not json', { 'Lambda-Runtime-Function-Error-Type': 'Runtime.SomethingBad' })
    expect((await answer).error).toEqual({ errorType: 'Runtime.SomethingBad', errorMessage: 'not json' })
  })

  it('refuses an unknown request id (400) without changing the answer', async () => {
    await start()
    const polling = next()
    await api.ready
    const answer = api.invoke({}, '', 5_000)
    const id = (await polling).headers.get('lambda-runtime-aws-request-id')!
    const wrong = await call('POST', `/invocation/00000000-0000-4000-8000-000000000000/response`, '{"forged": true}')
    expect(wrong.status).toBe(400)
    expect(wrong.json).toEqual({ errorMessage: 'Invalid request ID', errorType: 'InvalidRequestID' })
    const wrongError = await call('POST', `/invocation/not-an-id/error`, '{"errorType": "Forged", "errorMessage": ""}')
    expect(wrongError.status).toBe(400)
    expect((await call('POST', `/invocation/${id}/response`, '{"real": true}')).status).toBe(202)
    expect((await answer).result).toEqual({ real: true })
  })

  it('keeps the first answer: a second response or error is refused (403)', async () => {
    await start()
    const polling = next()
    await api.ready
    const answer = api.invoke({}, '', 5_000)
    const id = (await polling).headers.get('lambda-runtime-aws-request-id')!
    expect((await call('POST', `/invocation/${id}/response`, '{"first": true}')).status).toBe(202)
    const again = await call('POST', `/invocation/${id}/response`, '{"second": true}')
    expect(again.status).toBe(403)
    expect(again.json).toEqual({
      errorType: 'InvalidStateTransition',
      errorMessage: 'State transition from RuntimeResponseSentState to InvocationResponse failed for runtime. Error: State transition is not allowed',
    })
    const asError = await call('POST', `/invocation/${id}/error`, '{"errorType": "Late", "errorMessage": ""}')
    expect(asError.status).toBe(403)
    expect(asError.json.errorType).toBe('InvalidStateTransition')
    expect((await answer).result).toEqual({ first: true })
  })

  it('refuses an answer before any invocation (403)', async () => {
    await start()
    const early = await call('POST', `/invocation/00000000-0000-4000-8000-000000000000/response`, '{}')
    expect(early.status).toBe(403)
    expect(early.json.errorMessage).toMatch(/^State transition from Started to InvocationResponse failed/)
  })

  it('answers a response over 6 MiB + 100 bytes with 413, and the invoker with Function.ResponseSizeTooLarge', async () => {
    await start()
    const polling = next()
    await api.ready
    const answer = api.invoke({}, '', 10_000)
    const id = (await polling).headers.get('lambda-runtime-aws-request-id')!
    const body = Buffer.alloc(MAX_RUNTIME_PAYLOAD_BYTES + 1, 0x20)
    const posted = await call('POST', `/invocation/${id}/response`, body)
    expect(posted.status).toBe(413)
    expect(posted.json).toEqual({ errorMessage: 'Exceeded maximum allowed payload size (6291556 bytes).', errorType: 'RequestEntityTooLarge' })
    expect((await answer).error).toEqual({
      errorType: 'Function.ResponseSizeTooLarge',
      errorMessage: 'Response payload size (6291557 bytes) exceeded maximum allowed payload size (6291556 bytes).',
    })
    // The invocation is over: a retry with a smaller body cannot replace that answer.
    expect((await call('POST', `/invocation/${id}/response`, '{}')).status).toBe(403)
  })

  it('accepts a response of exactly the limit', async () => {
    await start()
    const polling = next()
    await api.ready
    const answer = api.invoke({}, '', 10_000)
    const id = (await polling).headers.get('lambda-runtime-aws-request-id')!
    const body = Buffer.concat([Buffer.from('"'), Buffer.alloc(MAX_RUNTIME_PAYLOAD_BYTES - 2, 0x61), Buffer.from('"')])
    expect((await call('POST', `/invocation/${id}/response`, body)).status).toBe(202)
    expect(((await answer).result as string).length).toBe(MAX_RUNTIME_PAYLOAD_BYTES - 2)
  })

  it('holds one invocation at a time: a second /next is refused while one waits or one is in flight', async () => {
    await start()
    const polling = next()
    await api.ready
    const concurrent = await next()
    expect(concurrent.status).toBe(403)
    expect(concurrent.json).toEqual({
      errorType: 'InvalidStateTransition',
      errorMessage: 'State transition from Ready to Ready failed for runtime. Error: State transition is not allowed',
    })
    const answer = api.invoke({ secret: 'payload' }, '', 5_000)
    const id = (await polling).headers.get('lambda-runtime-aws-request-id')!
    const during = await next()
    expect(during.status).toBe(403)
    expect(during.text).not.toContain('payload')
    expect(during.json.errorMessage).toMatch(/^State transition from Running to Ready failed/)
    await expect(api.invoke({}, '', 5_000)).rejects.toThrow(/already in flight/)
    await call('POST', `/invocation/${id}/response`, '1')
    expect((await answer).result).toBe(1)
  })

  it('answers a timed-out invocation with Sandbox.Timedout and refuses the late response', async () => {
    await start()
    const polling = next()
    await api.ready
    const timedOut = once(api, 'timeout')
    const answer = api.invoke({}, '', 300)
    const id = (await polling).headers.get('lambda-runtime-aws-request-id')!
    expect(await answer).toEqual({
      error: { errorType: 'Sandbox.Timedout', errorMessage: `RequestId: ${id} Error: Task timed out after 0.30 seconds` },
    })
    expect(await timedOut).toEqual([id])
    expect((await call('POST', `/invocation/${id}/response`, '{}')).status).toBe(403)
  })

  it('answers an invocation in flight with Runtime.ExitError when the environment ends', async () => {
    await start()
    const polling = next()
    await api.ready
    const answer = api.invoke({}, '', 5_000)
    const id = (await polling).headers.get('lambda-runtime-aws-request-id')!
    api.environmentExited(null, 'SIGKILL')
    expect((await answer).error).toEqual({
      errorType: 'Runtime.ExitError',
      errorMessage: `RequestId: ${id} Error: Runtime exited with error: signal: killed`,
    })
  })

  it('takes an init error before the first /next: start-up fails with it, and no later call is accepted', async () => {
    await start()
    const failed = once(api, 'initError')
    const posted = await call(
      'POST',
      '/init/error',
      JSON.stringify({ errorMessage: "Unable to import module 'x'", errorType: 'Runtime.ImportModuleError', stackTrace: [] }),
      { 'Lambda-Runtime-Function-Error-Type': 'Runtime.ImportModuleError' },
    )
    expect(posted.status).toBe(202)
    expect(posted.json).toEqual({ status: 'OK' })
    expect(await failed).toEqual([{ errorType: 'Runtime.ImportModuleError', errorMessage: "Unable to import module 'x'" }])
    const error = await api.ready.catch((e: unknown) => e)
    expect(error).toBeInstanceOf(RuntimeInitError)
    expect((error as Error).message).toBe("Unable to import module 'x' (Runtime.ImportModuleError)")
    expect((await next()).status).toBe(403)
    expect((await call('POST', '/init/error', '{}')).status).toBe(403)
    // "Error will be served in response to the first invoke."
    expect((await api.invoke({}, '', 1_000)).error).toEqual({ errorType: 'Runtime.ImportModuleError', errorMessage: "Unable to import module 'x'" })
  })

  it('refuses an init error after init (403)', async () => {
    await start()
    next().catch(() => {}) // held open until the environment closes
    await api.ready
    const late = await call('POST', '/init/error', '{"errorType": "Runtime.Late", "errorMessage": ""}')
    expect(late.status).toBe(403)
    expect(late.json.errorMessage).toBe('State transition from Ready to InitError failed for runtime. Error: State transition is not allowed')
  })

  it('answers unknown paths and methods with 404 and 405', async () => {
    await start()
    expect((await call('GET', '/invocation/abc/response')).status).toBe(405)
    expect((await call('POST', '/invocation/next')).status).toBe(405)
    expect((await call('GET', '/restore/next')).status).toBe(404)
  })
})

// --- the runtime client stand-in, in real Python processes -------------------------------------

const CLIENT = join(import.meta.dirname, '..', '..', 'python-runtime', 'emulation', 'runtime_client.py')

/** Every interpreter at hand among the default one and python3.11 .. 3.13 (3.11 and 3.13 must work). */
function interpreters(): string[] {
  const found = new Map<string, string>()
  for (const name of [process.env.PYTHON ?? '/usr/bin/python3', 'python3.11', 'python3.12', 'python3.13']) {
    const probe = spawnSync(name, ['-c', 'import sys; print(sys.executable, "%d.%d" % sys.version_info[:2])'], { encoding: 'utf8' })
    if (probe.status !== 0) continue
    const [exe, version] = probe.stdout.trim().split(' ')
    if (!found.has(version!)) found.set(version!, exe!)
  }
  return [...found.values()]
}

const taskRoot = mkdtempSync(join(tmpdir(), 'runtime-client-'))
writeFileSync(
  join(taskRoot, 'fn.py'),
  `import logging, os
logging.basicConfig(level=logging.INFO)  # a no-op under the runtime client, as under awslambdaric
logging.getLogger("fn").info("INFO-AT-IMPORT")

def handler(event, context):
    if event.get("raise"):
        raise ValueError("boom: " + event["raise"])
    return {"event": event, "request_id": context.aws_request_id, "tenant_id": context.tenant_id,
            "remaining": context.get_remaining_time_in_millis(), "arn": context.invoked_function_arn,
            "function_name": context.function_name, "memory": context.memory_limit_in_mb,
            "log_group": context.log_group_name, "trace": os.environ.get("_X_AMZN_TRACE_ID"),
            "unicode": "\\u00e9"}
`,
)
writeFileSync(join(taskRoot, 'broken.py'), 'import no_such_module_for_the_test\n')
writeFileSync(join(taskRoot, 'raising.py'), 'raise RuntimeError("the runner refused to start")\n')
afterAll(() => rmSync(taskRoot, { recursive: true, force: true }))

function runClient(python: string, handler: string): { proc: ChildProcess; stderr: () => string } {
  let stderr = ''
  const proc = spawn(python, ['-B', CLIENT], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      AWS_LAMBDA_RUNTIME_API: api.address,
      _HANDLER: handler,
      LAMBDA_TASK_ROOT: taskRoot,
      AWS_LAMBDA_FUNCTION_NAME: 'sandbox',
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '2048',
      AWS_LAMBDA_LOG_GROUP_NAME: '/aws/lambda/sandbox',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  proc.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  return { proc, stderr: () => stderr }
}

describe.each(interpreters())('runtime_client.py on %s', (python) => {
  let client: ReturnType<typeof runClient> | undefined
  afterEach(() => {
    client?.proc.kill('SIGKILL')
    client = undefined
  })

  it('calls the handler with the event and a LambdaContext over one kept-alive connection', async () => {
    await start()
    client = runClient(python, 'fn.handler')
    await api.ready
    const first = await api.invoke({ n: 1 }, 'org_a', 5_000)
    const result = first.result as Record<string, unknown>
    expect(result).toMatchObject({
      event: { n: 1 },
      tenant_id: 'org_a',
      arn: 'arn:aws:lambda:us-east-1:012345678912:function:sandbox',
      function_name: 'sandbox',
      memory: '2048',
      log_group: '/aws/lambda/sandbox',
      unicode: 'é',
    })
    expect(result.request_id).toMatch(UUID)
    expect(result.remaining).toBeGreaterThan(4_000)
    expect(result.remaining).toBeLessThanOrEqual(5_000)
    expect(result.trace).toMatch(/^Root=1-/)
    // awslambdaric's encoding: simplejson's separators, non-ASCII escaped off the managed runtimes.
    expect(first.payload!.toString()).toContain('"event": {"n": 1}, ')
    expect(first.payload!.toString()).toContain('"\\u00e9"')

    const second = await api.invoke({ n: 2 }, '', 5_000)
    expect(second.result).toMatchObject({ event: { n: 2 }, tenant_id: null })
    expect(api.connections).toBe(1)
    // The module's basicConfig(INFO) did nothing: the root logger already had the client's handler.
    expect(client.stderr()).not.toContain('INFO-AT-IMPORT')
  })

  it('reports a handler exception as an error with its traceback, and goes on', async () => {
    await start()
    client = runClient(python, 'fn.handler')
    await api.ready
    const failed = await api.invoke({ raise: 'x' }, '', 5_000)
    expect(failed.error).toMatchObject({ errorType: 'ValueError', errorMessage: 'boom: x' })
    expect(failed.error!.requestId).toMatch(UUID)
    const trace = (failed.error!.stackTrace as string[]).join('')
    expect(trace).toContain('fn.py')
    expect(trace).not.toContain('runtime_client.py')
    expect(client.stderr()).toContain('[ERROR] ValueError: boom: x')
    expect((await api.invoke({ n: 3 }, '', 5_000)).result).toMatchObject({ event: { n: 3 } })
  })

  it('posts an import failure to /init/error and exits 1', async () => {
    await start()
    client = runClient(python, 'broken.handler')
    const exited = once(client.proc, 'exit')
    const error = await api.ready.catch((e: unknown) => e)
    expect(error).toBeInstanceOf(RuntimeInitError)
    expect((error as RuntimeInitError).errorType).toBe('Runtime.ImportModuleError')
    expect((error as Error).message).toContain("Unable to import module 'broken': No module named 'no_such_module_for_the_test'")
    expect((await exited)[0]).toBe(1)
  })

  it('posts an exception raised at import (e.g. the runner refusing to start) to /init/error', async () => {
    await start()
    client = runClient(python, 'raising.handler')
    const exited = once(client.proc, 'exit')
    const error = (await api.ready.catch((e: unknown) => e)) as RuntimeInitError
    expect(error.errorType).toBe('RuntimeError')
    expect(error.message).toBe('the runner refused to start (RuntimeError)')
    expect((await exited)[0]).toBe(1)
  })

  it('reports a missing handler function', async () => {
    await start()
    client = runClient(python, 'fn.nope')
    const error = (await api.ready.catch((e: unknown) => e)) as RuntimeInitError
    expect(error.errorType).toBe('Runtime.HandlerNotFound')
  })
})
