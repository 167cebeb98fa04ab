import type { SQSEvent } from 'aws-lambda'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { LambdaSandbox } from '../../functions/adapters/lambda-sandbox'
import { ScriptedModel } from '../../functions/adapters/models/scripted'
import { reservationSeconds, STALE_MARGIN_SECONDS } from '../../functions/core/abandoned-runs'
import { type BackgroundRuns, type BackgroundTicket, jobKey } from '../../functions/core/background'
import type { ModelProvider } from '../../functions/core/model'
import { createSandboxLambdaClient } from '../../functions/handlers/deps'
import { createFailedRunsHandler } from '../../functions/handlers/failed-runs'
import { startTestService, TEST_KEY } from '../support/local'
import { startOwnApi } from '../support/own-api'

// Background runs that no worker finishes, over the real local stores (dynalite, s3rver) and the
// real sandbox: the worker's failure destination (Lambda's invocation records, as the SQS
// messages the failure handler reads) and the readers' and claims' backstop (through the HTTP
// API, with a clock the test moves forward). The API dispatches to a recorder, so each run is
// delivered to the worker handler by hand, late, or never, as Lambda might.

const ORG = 'org_test'
const DEADLINE_MS = 240_000 // the API's default RESPONSE_DEADLINE_MS, as deployed
const RESERVATION_S = reservationSeconds(DEADLINE_MS)

let ctx: Awaited<ReturnType<typeof startTestService>>
let own: Awaited<ReturnType<typeof startOwnApi>>
let worker: (event: unknown, context?: { awsRequestId: string; getRemainingTimeInMillis(): number }) => Promise<any>
let failedRuns: ReturnType<typeof createFailedRunsHandler>
const logged: string[] = []
const tickets: BackgroundTicket[] = []
/** Seconds the service's clock is ahead of the real one. */
let ahead = 0
/** While set, every model call waits for it: a worker "hangs" there. */
let gate: Promise<void> | undefined

const scripted = new ScriptedModel({ script: join(import.meta.dirname, '..', 'fixtures', 'scripted', 'compound-interest.json') })
const model: ModelProvider = {
  name: 'scripted',
  defaultModel: scripted.defaultModel,
  converse: async (request) => {
    if (gate) await gate
    return scripted.converse(request)
  },
}
const recorder: BackgroundRuns = { start: async (ticket) => void tickets.push(ticket) }

async function call(method: string, path: string, body?: unknown) {
  const res = await fetch(own.url + path, {
    method,
    headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  return { status: res.status, body: (await res.json()) as any }
}

const execute = (session: string, code: string) => call('POST', '/v1/executions', { organization_id: ORG, code, session_id: session })
const get = async (id: string) => (await call('GET', `/v1/responses/${id}`)).body
const stored = async (id: string) => (await ctx.service.store.getResponse(ORG, id))!

let assistantId: string
/** A background run on a new session: its response (queued) and its session id. */
async function queueRun() {
  const session = (await call('POST', '/v1/sessions')).body.id as string
  const res = await call('POST', '/v1/responses', {
    assistant_id: assistantId,
    background: true,
    session_id: session,
    inputs: [{ role: 'user', content: 'What is the compound interest on $10,000 at 7% for 20 years?' }],
  })
  expect(res.status).toBe(202)
  expect(tickets.at(-1)).toEqual({ organizationId: ORG, responseId: res.body.id })
  return { id: res.body.id as string, session, ticket: tickets.at(-1)! }
}

/** One SQS message per record, as Lambda's on-failure destination sends them. */
let messages = 0
function sqsEvent(...records: unknown[]): SQSEvent {
  return {
    Records: records.map((r) => ({
      messageId: `msg-${++messages}`,
      receiptHandle: 'r',
      body: typeof r === 'string' ? r : JSON.stringify(r),
      attributes: {} as never,
      messageAttributes: {},
      md5OfBody: '',
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:failed-runs',
      awsRegion: 'us-east-1',
    })),
  }
}

/** Lambda's invocation record of a failed asynchronous invocation of the worker. */
function record(ticket: BackgroundTicket, requestId: string, condition: 'RetriesExhausted' | 'EventAgeExceeded', responsePayload?: unknown) {
  return {
    version: '1.0',
    timestamp: new Date().toISOString(),
    requestContext: {
      requestId,
      functionArn: 'arn:aws:lambda:us-east-1:123456789012:function:CodeInterpreter-WorkerFunction:$LATEST',
      condition,
      approximateInvokeCount: condition === 'EventAgeExceeded' ? 0 : 1,
    },
    requestPayload: ticket,
    responseContext: condition === 'EventAgeExceeded' ? undefined : { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled' },
    responsePayload,
  }
}

const lambdaContext = (awsRequestId: string) => ({ awsRequestId, getRemainingTimeInMillis: () => RESERVATION_S * 1000 }) // the worker's timeout

async function until(check: () => Promise<boolean>, timeoutMs = 20_000) {
  const end = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out waiting')
    await new Promise((r) => setTimeout(r, 50))
  }
}

beforeAll(async () => {
  ctx = await startTestService({ SANDBOX_SLOT_UID_BASE: '66800', SANDBOX_WORKERS: '1' })
  const sandbox = new LambdaSandbox({
    client: createSandboxLambdaClient(30_000, { endpoint: ctx.service.lambdaUrl, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }),
    functionName: 'sandbox',
    tenantIsolation: true,
  })
  own = await startOwnApi(ctx.service, { sandbox, model, background: recorder })
  // One clock for the API, the worker and the failure handler, which the tests move forward.
  own.deps.clock.now = () => new Date(Date.now() + ahead * 1000)
  vi.stubEnv('SANDBOX_FUNCTION_NAME', 'sandbox')
  vi.stubEnv('TABLE_NAME', 'interpreter')
  vi.stubEnv('BUCKET_NAME', 'interpreter-local')
  const { createWorkerHandler } = await import('../../functions/handlers/worker')
  vi.unstubAllEnvs()
  worker = createWorkerHandler(own.deps)
  failedRuns = createFailedRunsHandler({ store: ctx.service.store, blobs: ctx.service.blobs, clock: own.deps.clock }, (line) => logged.push(line))
  assistantId = (await call('POST', '/v1/assistants', { name: 'Analyst', tools: [{ type: 'code_interpreter' }] })).body.id
})
afterAll(async () => {
  await own?.stop()
  await ctx?.stop()
})

describe('the failure destination (failed-runs handler over the real stores)', () => {
  it('a dropped event (EventAgeExceeded) ends the run failed, frees its session and deletes its job; a late delivery runs nothing', async () => {
    const run = await queueRun()
    expect((await execute(run.session, '1')).status).toBe(409) // reserved for the run
    expect(await ctx.service.blobs.head(jobKey(ORG, run.id))).toBeDefined()

    const answer = await failedRuns(sqsEvent(record(run.ticket, 'req-expired', 'EventAgeExceeded')))
    expect(answer).toEqual({ batchItemFailures: [] })
    const failed = await get(run.id)
    expect(failed).toMatchObject({ status: 'failed', session_id: run.session, error: { code: 'background_run_lost' } })
    expect(failed.error.message).toMatch(/never started: Lambda dropped it after the worker's maximum event age/)
    expect((await execute(run.session, 'print(1)')).status).toBe(200) // released at once, long before the reservation ends
    expect(await ctx.service.blobs.head(jobKey(ORG, run.id))).toBeUndefined()

    // Lambda may still deliver a copy of the event: the worker finds the run ended.
    expect(await worker(run.ticket, lambdaContext('req-copy'))).toEqual({ response_id: run.id, status: 'skipped' })
    // The same record twice (SQS is at least once) changes nothing.
    expect(await failedRuns(sqsEvent(record(run.ticket, 'req-expired', 'EventAgeExceeded')))).toEqual({ batchItemFailures: [] })
    expect(await get(run.id)).toEqual(failed)
  })

  it('a worker that dies mid-run (its own invocation reported) is ended at once, and its late writes change nothing', async () => {
    let open!: () => void
    gate = new Promise((r) => (open = r))
    const run = await queueRun()
    // The invocation "times out" in the model call; in this process its code goes on afterwards.
    const late = worker(run.ticket, lambdaContext('req-timeout'))
    try {
      await until(async () => (await stored(run.id)).status === 'in_progress')
      expect((await execute(run.session, '1')).status).toBe(409)

      const answer = await failedRuns(
        sqsEvent(record(run.ticket, 'req-timeout', 'RetriesExhausted', { errorType: 'Sandbox.Timedout', errorMessage: 'RequestId: req-timeout Error: Task timed out after 300.00 seconds' })),
      )
      expect(answer).toEqual({ batchItemFailures: [] })
      const failed = await get(run.id)
      expect(failed).toMatchObject({ status: 'failed', error: { code: 'background_run_lost' } })
      expect(failed.error.message).toMatch(/worker stopped before it stored this run \(RetriesExhausted: Sandbox\.Timedout: .*Task timed out after 300\.00 seconds\)/)
      // The session is free at once, and another request uses it.
      expect((await execute(run.session, 'x = 41')).status).toBe(200)

      // The "dead" worker carries on: it runs its block, then tries to store its progress, its
      // session and its response. None of it lands.
      gate = undefined
      open()
      await late
      expect(await get(run.id)).toEqual(failed)
      const next = await execute(run.session, 'print(x + 1)')
      expect(next.status).toBe(200)
      expect(next.body.outputs).toEqual([{ type: 'text', source: 'stdout', text: '42' }])
      const principal = await execute(run.session, "print('principal' in globals())")
      expect(principal.body.outputs).toEqual([{ type: 'text', source: 'stdout', text: 'False' }])
    } finally {
      gate = undefined
      open()
    }
  })

  it('a run another delivery took is left while that one may run (retried), and ended once its lease is over', async () => {
    const run = await queueRun()
    const now = own.deps.clock.now().getTime()
    // Another delivery of the same event took it and may still be running.
    expect(await ctx.service.store.takeQueued(ORG, run.id, { until: now + 60_000, by: 'req-live' })).toBe(true)
    const event = sqsEvent(record(run.ticket, 'req-other', 'RetriesExhausted', { errorType: 'Error', errorMessage: 'boom' }))
    expect(await failedRuns(event)).toEqual({ batchItemFailures: [{ itemIdentifier: event.Records[0]!.messageId }] })
    expect((await stored(run.id)).status).toBe('queued')

    // SQS brings it back after its visibility timeout; by then the lease (plus the margin) is over.
    ahead += 60 + STALE_MARGIN_SECONDS
    try {
      expect(await failedRuns(event)).toEqual({ batchItemFailures: [] })
    } finally {
      ahead -= 60 + STALE_MARGIN_SECONDS
    }
    expect(await stored(run.id)).toMatchObject({ status: 'failed', error: { code: 'background_run_lost', message: expect.stringMatching(/worker stopped before it stored this run \(RetriesExhausted: Error: boom\)/) } })
  })

  it('a record of a run that ended is dropped, and so is a message that is no invocation record', async () => {
    const run = await queueRun()
    expect(await worker(run.ticket, lambdaContext('req-ok'))).toEqual({ response_id: run.id, status: 'completed' })
    const done = await get(run.id)
    expect(await failedRuns(sqsEvent(record(run.ticket, 'req-ok', 'RetriesExhausted', 'oops'), 'not json', { requestPayload: { x: 1 } }))).toEqual({
      batchItemFailures: [],
    })
    expect(await get(run.id)).toEqual(done)
    expect(logged.filter((l) => l.includes('not an invocation record'))).toHaveLength(2)
  })
})

describe('the backstop (through the HTTP API, the clock moved forward)', () => {
  it('GET ends a run no worker took once its reservation (and the event age) is over, plus a margin; a late delivery runs nothing', async () => {
    const run = await queueRun()
    const created = (await get(run.id)).created_at as number
    const moveTo = (seconds: number) => (ahead = seconds - (Math.floor(Date.now() / 1000) - created))
    try {
      moveTo(RESERVATION_S + STALE_MARGIN_SECONDS - 5)
      expect((await get(run.id)).status).toBe('queued') // not before its time
      moveTo(RESERVATION_S + STALE_MARGIN_SECONDS + 1)
      const failed = await get(run.id)
      expect(failed).toMatchObject({ status: 'failed', error: { code: 'background_run_lost' } })
      expect(failed.error.message).toMatch(new RegExp(`never started: no worker took it within ${RESERVATION_S} s of being queued`))
      expect(await ctx.service.blobs.head(jobKey(ORG, run.id))).toBeUndefined()
      expect((await execute(run.session, 'print(1)')).status).toBe(200)
      expect(await worker(run.ticket)).toEqual({ response_id: run.id, status: 'skipped' })
      expect(await get(run.id)).toEqual(failed)
      // Cancelling it now says it has ended.
      expect((await call('POST', `/v1/responses/${run.id}/cancel`)).status).toBe(409)
    } finally {
      ahead = 0
    }
  })

  it('GET ends a run whose worker stopped once its lease is over, never before; the worker\'s late final write does not bring it back', async () => {
    let open!: () => void
    gate = new Promise((r) => (open = r))
    const run = await queueRun()
    const late = worker(run.ticket, lambdaContext('req-hung'))
    try {
      await until(async () => (await stored(run.id)).status === 'in_progress')
      const lease = RESERVATION_S // the time the invocation said it had left
      ahead = lease + STALE_MARGIN_SECONDS - 5
      expect((await get(run.id)).status).toBe('in_progress') // may still be running: left alone
      ahead = lease + STALE_MARGIN_SECONDS + 2
      const failed = await get(run.id)
      expect(failed).toMatchObject({ status: 'failed', error: { code: 'background_run_lost' } })
      expect(failed.error.message).toMatch(/worker stopped before it stored this run: it did not report back by the end of its time limit/)
      gate = undefined
      open()
      await late // the run loop sees its deadline passed and stores `incomplete`: refused
      expect(await get(run.id)).toEqual(failed)
    } finally {
      gate = undefined
      open()
      ahead = 0
    }
  })

  it('GET ends a run taken by a worker from before leases once its deadline and margins are over', async () => {
    const run = await queueRun()
    expect(await ctx.service.store.takeQueued(ORG, run.id)).toBe(true) // no lease recorded
    const over = DEADLINE_MS / 1000 + 60 + STALE_MARGIN_SECONDS
    try {
      ahead = over - 5
      expect((await get(run.id)).status).toBe('queued')
      ahead = over + 2
      expect(await get(run.id)).toMatchObject({ status: 'failed', error: { message: expect.stringMatching(/worker stopped before it stored this run/) } })
    } finally {
      ahead = 0
    }
  })

  it('claiming a session whose background run let its claim lapse ends that run (taken by a worker, lease over)', async () => {
    const run = await queueRun()
    const now = own.deps.clock.now().getTime()
    expect(await ctx.service.store.takeQueued(ORG, run.id, { until: now + 10_000, by: 'req-gone' })).toBe(true)
    try {
      ahead = RESERVATION_S + 1 // the reservation lapsed; nobody read the run meanwhile
      expect((await execute(run.session, 'print(1)')).status).toBe(200)
      // Read from the store, not through GET (whose own backstop would end it too).
      expect(await stored(run.id)).toMatchObject({
        status: 'failed',
        error: { code: 'background_run_lost', message: expect.stringMatching(new RegExp(`claim on session ${run.session} lapsed and another request has taken the session`)) },
      })
    } finally {
      ahead = 0
    }
  })

  it('claiming a session whose queued run never started ends it, and Lambda\'s late copy runs nothing', async () => {
    const run = await queueRun()
    try {
      ahead = RESERVATION_S + 1
      expect((await execute(run.session, 'print(1)')).status).toBe(200)
      expect(await stored(run.id)).toMatchObject({ status: 'failed', error: { message: expect.stringMatching(/never started: no worker took it before its claim on session/) } })
      expect(await worker(run.ticket)).toEqual({ response_id: run.id, status: 'skipped' })
    } finally {
      ahead = 0
    }
  })
})
