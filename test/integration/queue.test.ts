import { afterAll, beforeAll, expect, it } from 'vitest'
import { execute, executeOnceBack, startTestService } from '../support/local'

let ctx: Awaited<ReturnType<typeof startTestService>>

beforeAll(async () => {
  ctx = await startTestService({ SANDBOX_SLOT_UID_BASE: '62200', SANDBOX_WORKERS: '1', SANDBOX_QUEUE_LIMIT: '1' })
})
afterAll(async () => ctx?.stop())

it('queues requests beyond the pool and answers 429 past the queue', async () => {
  const slow = "import time\ntime.sleep(1.5)\nprint('slow done')"
  const results = await Promise.all([
    execute(ctx.service, slow),
    new Promise((r) => setTimeout(r, 100)).then(() => execute(ctx.service, "print('queued')")),
    new Promise((r) => setTimeout(r, 200)).then(() => execute(ctx.service, "print('refused')")),
  ])
  const [first, second, third] = results
  expect(first.body.outputs[0].text).toBe('slow done')
  expect(second.status).toBe(200)
  expect(second.body.outputs[0].text).toBe('queued')
  expect(third.status).toBe(429)
  expect(third.body.error.code).toBe('sandbox_busy')
  // Once the queue drains, work is accepted again.
  expect((await execute(ctx.service, "print('after')")).body.outputs[0].text).toBe('after')
})

it('a worker that dies mid-block gives a clean error and is replaced', async () => {
  // SIGKILL from outside, like the OOM killer or a crash of the runner itself.
  const pending = execute(ctx.service, 'import time\ntime.sleep(3)')
  await new Promise((r) => setTimeout(r, 500))
  for (const pid of ctx.service.pool.workerPids()) process.kill(pid, 'SIGKILL')
  const res = await pending
  expect(res.status).toBe(503)
  expect(res.body.error.code).toBe('sandbox_unavailable')
  // The pool starts a fresh worker in its place.
  const after = await executeOnceBack(ctx.service, "print('back')")
  expect(after.body.outputs[0].text).toBe('back')
})
