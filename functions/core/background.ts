/**
 * Background runs (`"background": true`). The API stores the run's job (the request, whatever
 * its size) beside the session state, stores the response `queued`, and hands a worker a ticket
 * of two ids; the worker takes the ticket once, loads the job and runs it. Deployed, the ticket
 * travels in an asynchronous Lambda invoke, which takes at most 1 MB (docs.aws.amazon.com/lambda/
 * latest/dg/API_Invoke.html) while a request may be 10 MB, and which Lambda may deliver more than
 * once; locally, it runs in this process.
 */
import { BackgroundJob, type BackgroundTicket } from '../contract/background'
import type { ResponseObject } from '../contract/responses'
import { type AbandonDeps, abandonRun, isOpen, jobKey, runLease, type StaleDeps, settleStaleRun, STALE_MARGIN_SECONDS } from './abandoned-runs'
import type { Caller } from './auth'
import { ApiError, backgroundDispatchFailed } from './errors'
import type { BlobStore, Clock } from './ports'
import { getResponse, type PreparedResponse, prepareResponse, responseClaim, type ResponsesDeps } from './responses'
import { releaseSession } from './sessions'
import type { ResponseStore, SessionStore } from './stores'

export type { BackgroundJob, BackgroundTicket }
export { jobKey }

/** Starts a background run and returns at once: the worker loads the job the ticket names. */
export interface BackgroundRuns {
  start(ticket: BackgroundTicket): Promise<void>
}

export interface DispatchDeps {
  store: ResponseStore & SessionStore
  blobs: BlobStore
  background: BackgroundRuns
}

const describe = (error: unknown) => {
  const e = error as { name?: string; message?: string }
  const text = e?.message ? (e.name && e.name !== 'Error' ? `${e.name}: ${e.message}` : e.message) : String(error)
  return text.slice(0, 300)
}

/**
 * The API's side: reserves the session (a busy one is 409 now, not later), stores the job and
 * the `queued` response, then dispatches the ticket. If anything after the reservation fails,
 * nothing runs: the response is stored `failed`, the session's claim is released, the job is
 * deleted, and the caller gets 503 background_not_available saying why.
 */
export async function startBackground(prepared: PreparedResponse, job: BackgroundJob, deps: DispatchDeps): Promise<ResponseObject> {
  const queued = prepared.queued(job.responseId)
  await prepared.reserve(job.responseId)
  const key = jobKey(job.organizationId, job.responseId)
  try {
    await deps.blobs.put(key, Buffer.from(JSON.stringify(job)), 'application/json')
    await deps.store.putResponse(queued)
    await deps.background.start({ organizationId: job.organizationId, responseId: job.responseId })
  } catch (error) {
    const message =
      `The background run could not be started (${describe(error)}); nothing ran, and response ${job.responseId} is stored failed. ` +
      'Retry (with a new Idempotency-Key, if you sent one), or use stream: true.'
    await Promise.allSettled([
      deps.store.putResponse({ ...queued, status: 'failed', error: { code: 'background_not_available', message } }),
      prepared.release(job.responseId),
      deps.blobs.delete([key]),
    ])
    throw backgroundDispatchFailed(message)
  }
  return queued
}

/** What a worker did with a ticket: `skipped` when another delivery of it took the run. */
export interface TicketOutcome {
  response_id: string
  status: ResponseObject['status'] | 'skipped'
}

/** The invocation running a ticket, as Lambda tells it (deployed): its request id and time left. */
export interface Invocation {
  id?: string
  remainingMs?: number
}

/**
 * The worker's side: takes the queued run once (a repeated delivery of the same ticket finds it
 * taken and does nothing), loads its job, runs it, and deletes the job. Taking it records the
 * worker's lease (until when it may run, and which invocation it is), by which a run whose worker
 * died is recognised as over (abandoned-runs.ts).
 */
export async function runBackgroundTicket(ticket: BackgroundTicket, deps: ResponsesDeps, invocation: Invocation = {}): Promise<TicketOutcome> {
  const { organizationId, responseId } = ticket
  const lease = runLease(deps.clock, deps.limits.deadlineMs, invocation)
  if (!(await deps.store.takeQueued(organizationId, responseId, lease))) return { response_id: responseId, status: 'skipped' }
  const key = jobKey(organizationId, responseId)
  try {
    let job: BackgroundJob
    try {
      const raw = await deps.blobs.get(key)
      if (!raw) throw new Error('its stored request is missing')
      job = BackgroundJob.parse(JSON.parse(Buffer.from(raw).toString('utf8')))
      if (job.organizationId !== organizationId || job.responseId !== responseId) throw new Error('its stored request belongs to another run')
    } catch (error) {
      const stored = await deps.store.getResponse(organizationId, responseId)
      if (!stored) throw error
      const failed = await failRun(stored, new Error(`The background run could not be loaded: ${describe(error)}`), deps)
      return { response_id: responseId, status: failed.status }
    }
    const response = await runBackgroundJob(job, deps)
    return { response_id: response.id, status: response.status }
  } finally {
    await deps.blobs.delete([key]).catch(() => undefined)
  }
}

/**
 * Runs a job under its response id, saving progress between steps (GET /v1/responses/{id} shows
 * the calls finished so far) and stopping when cancelled. Whatever happens, the response ends
 * stored with its final status and the session's claim is let go.
 */
export async function runBackgroundJob(job: BackgroundJob, deps: ResponsesDeps): Promise<ResponseObject> {
  const caller: Caller = { organizationId: job.organizationId, keyId: job.keyId }
  try {
    const prepared = await prepareResponse(caller, job.request, deps, { sessionId: job.sessionId })
    return await prepared.run({ responseId: job.responseId, checkpoint: (r) => deps.store.saveProgress(r) })
  } catch (error) {
    const stored = await deps.store.getResponse(job.organizationId, job.responseId)
    if (!stored) throw error // deleted meanwhile: nothing to mark
    return failRun(stored, error, deps)
  }
}

/** Stores the run `failed` and releases the claim its reservation holds (if it still does). */
async function failRun(stored: ResponseObject, error: unknown, deps: ResponsesDeps): Promise<ResponseObject> {
  const failed: ResponseObject = {
    ...stored,
    status: 'failed',
    error: {
      code: error instanceof ApiError ? error.code : 'internal_error',
      message: error instanceof Error ? error.message : String(error),
    },
  }
  await deps.store.putResponse(failed)
  if (stored.session_id) await releaseSession(deps.store, stored.organization_id, stored.session_id, responseClaim(stored.id))
  return failed
}

/**
 * What Lambda reported to the worker's failure destination: the invocation of `ticket` failed
 * (`RetriesExhausted`: it threw, timed out, ran out of memory or crashed) or its event was
 * dropped unrun (`EventAgeExceeded`).
 */
export interface FailedDelivery {
  ticket: BackgroundTicket
  /** Lambda's request id of the failed invocation. */
  requestId: string
  condition: string
  /** What the invocation answered, e.g. "Sandbox.Timedout: Task timed out after 300.00 seconds". */
  error?: string
}

/**
 * What came of a failed delivery: `failed` when the run was given up now; `ended` when there was
 * nothing to do (it ended, or is gone); `running` when another invocation took the run and may
 * still be running it (ask again later: once its lease has ended, the run is given up).
 */
export interface DeliveryOutcome {
  response_id: string
  status: 'failed' | 'ended' | 'running'
}

/**
 * The failure destination's side. Lambda reports a failure only once that invocation has ended,
 * so the run is given up when no worker took it (nothing runs it, and none ever will: a later
 * delivery finds it failed), when the failed invocation is the one that took it, or when its
 * worker's lease has ended. A run taken by another delivery that may still run is left to it.
 */
export async function endFailedDelivery(failure: FailedDelivery, deps: AbandonDeps & { clock: Clock }): Promise<DeliveryOutcome> {
  const { organizationId, responseId } = failure.ticket
  const stored = await deps.store.getResponse(organizationId, responseId)
  if (!stored || !isOpen(stored)) return { response_id: responseId, status: 'ended' }
  const expired = failure.condition === 'EventAgeExceeded'
  const cause = failure.error ? `${failure.condition}: ${failure.error}` : failure.condition
  const failed = await abandonRun(
    stored,
    {
      untaken: {},
      // An expired event never ran, so it cannot be the invocation that took the run.
      taken: { leaseEndedBy: deps.clock.now().getTime() - STALE_MARGIN_SECONDS * 1000, ...(expired ? {} : { by: failure.requestId }) },
    },
    {
      untaken: expired
        ? "The background run never started: Lambda dropped it after the worker's maximum event age (the worker was throttled or could not be invoked). Nothing ran; start it again."
        : `The background run never started: the worker's invocation failed before it took the run (${cause}). Nothing ran; start it again.`,
      taken:
        `The background worker stopped before it stored this run (${expired ? 'it did not report back by the end of its time limit' : cause}). ` +
        'The calls shown are those saved before; the session keeps its state from before this run.',
    },
    deps,
  )
  if (failed) return { response_id: responseId, status: 'failed' }
  const now = await deps.store.getResponse(organizationId, responseId)
  return { response_id: responseId, status: now && isOpen(now) ? 'running' : 'ended' }
}

/**
 * GET /v1/responses/{id} (and the routes that act on a stored response): the response, given up
 * as `failed` first when it is a background run past its time (abandoned-runs.ts settleStaleRun).
 */
export async function readResponse(caller: Caller, id: string, deps: StaleDeps): Promise<ResponseObject> {
  return settleStaleRun(await getResponse(caller, id, deps.store), deps)
}

/** Local mode: the same worker code, in this process. */
export class InProcessBackground implements BackgroundRuns {
  private readonly running = new Set<Promise<unknown>>()

  constructor(
    private readonly deps: () => ResponsesDeps,
    private readonly log: (line: string) => void = console.error,
  ) {}

  async start(ticket: BackgroundTicket): Promise<void> {
    const run = runBackgroundTicket(ticket, this.deps())
      .catch((error: Error) => this.log(`background run ${ticket.responseId} failed: ${error.stack}`))
      .finally(() => this.running.delete(run))
    this.running.add(run)
  }

  /** Waits for the runs in flight (tests, shutdown). */
  async drain(): Promise<void> {
    await Promise.all([...this.running])
  }
}
