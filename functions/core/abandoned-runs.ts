/**
 * Background runs that no worker will finish. A worker that times out, runs out of memory or
 * crashes stores nothing, and an event Lambda drops (after its maximum event age) never reaches
 * a worker; the run would stay `queued` or `in_progress` for good. Three things end it, all
 * through abandonRun below, which stores it `failed` with an error naming the cause and lets go
 * of its session:
 *
 * - the worker's failure destination (deployed): Lambda reports the failed invocation or the
 *   dropped event, and handlers/failed-runs.ts hands it to endFailedDelivery (core/background.ts);
 * - reading it (GET /v1/responses/{id}, a cancel, an idempotent retry) once it is past its time:
 *   settleStaleRun;
 * - another request taking over its session after the run's claim lapsed: settleLapsedClaim.
 *
 * Races. The store gives a run up with one conditional write, and only while the run is still
 * queued or in progress and provably over: never taken by a worker (so none runs it: taking and
 * giving up exclude each other), or taken by a worker whose lease, its hard time limit, ended
 * (Lambda stopped it), or taken by the very invocation whose failure Lambda reported. The give-up
 * wins for good: afterwards the store refuses the response's other writes (putResponse,
 * saveProgress) and takeQueued, and the session's claim is no longer the run's, so a worker that
 * turns up late, or a run that outlived its lease (locally, where nothing stops it), changes
 * neither the response nor the session.
 */
import type { ResponseObject } from '../contract/responses'
import type { BlobStore, Clock } from './ports'
import type { AbandonWhen, ResponseStore, RunLease, SessionStore, TakenRun, UntakenRun } from './stores'

/** Error code of a run given up here (the message names the cause). */
export const RUN_LOST = 'background_run_lost'

/**
 * Seconds past a run's own limit (its reservation, or its worker's lease) before a reader, or the
 * failure handler for a run another delivery took, gives it up: room for a worker's last write
 * and for clocks that differ a little. A claim that took the session over needs none: the run's
 * session writes are refused from then on whatever it does.
 */
export const STALE_MARGIN_SECONDS = 60

/** Beyond the run loop's deadline: the step in flight ends and the response is stored. */
export const RUN_MARGIN_SECONDS = 60

/**
 * How long the API reserves a background run's session (core/responses.ts claims it for the
 * deadline plus a minute): the run must start within it. The worker's maximum event age
 * (lib/constructs/worker.ts) is no longer, so a run no worker took by then never will be.
 */
export const reservationSeconds = (deadlineMs: number) => Math.ceil(deadlineMs / 1000) + RUN_MARGIN_SECONDS

/** Where a queued run's job waits for its worker (under `state/`, which the service may touch). */
export const jobKey = (organizationId: string, responseId: string) => `state/${organizationId}/jobs/${responseId}.json`

export const isOpen = (r: Pick<ResponseObject, 'status'>) => r.status === 'queued' || r.status === 'in_progress'

/** The claim a response holds on its session (core/responses.ts responseClaim). */
const claimOf = (responseId: string) => `claim_${responseId}`
const RESPONSE_CLAIM = /^claim_(resp_[A-Za-z0-9_-]+)$/

/**
 * A worker's lease on the run it takes: its invocation's own remaining time when known (Lambda
 * stops it then), else the run loop's deadline plus the margin its final write needs.
 */
export function runLease(clock: Clock, deadlineMs: number, invocation: { id?: string; remainingMs?: number } = {}): RunLease {
  const limitMs = invocation.remainingMs ?? deadlineMs + RUN_MARGIN_SECONDS * 1000
  return { until: clock.now().getTime() + limitMs, ...(invocation.id ? { by: invocation.id } : {}) }
}

export interface AbandonDeps {
  store: ResponseStore & SessionStore
  /** To delete the run's stored job (none when absent: the bucket's state expiry removes it). */
  blobs?: Pick<BlobStore, 'delete'>
}

/** The cause, one message per case the store may match. */
export interface Causes {
  /** No worker took the run. */
  untaken: string
  /** A worker took it and stopped without storing it. */
  taken: string
}

/**
 * Gives the run up if `untaken` or `taken` holds (each with its own message): stored `failed`
 * (keeping the calls saved so far), its session's claim released, its job deleted. Returns the
 * failed response, or undefined when neither held (ended meanwhile, or may still be running).
 */
export async function abandonRun(
  stored: ResponseObject,
  when: { untaken?: UntakenRun; taken?: TakenRun },
  causes: Causes,
  deps: AbandonDeps,
): Promise<ResponseObject | undefined> {
  const cases: [AbandonWhen, string][] = []
  if (when.untaken) cases.push([{ untaken: when.untaken }, causes.untaken])
  if (when.taken) cases.push([{ taken: when.taken }, causes.taken])
  for (const [condition, message] of cases) {
    const failed: ResponseObject = { ...stored, status: 'failed', error: { code: RUN_LOST, message } }
    if (!(await deps.store.abandonRun(failed, condition))) continue
    await Promise.allSettled([
      releaseClaim(deps.store, stored.organization_id, stored.session_id, claimOf(stored.id)),
      // Its worker deletes the job when it ends; one that never started or died leaves it.
      deps.blobs?.delete([jobKey(stored.organization_id, stored.id)]),
    ])
    return failed
  }
  return undefined
}

/** Lets go of `holder`'s claim on the session, if it still holds it (as sessions.ts releaseSession). */
async function releaseClaim(store: SessionStore, organizationId: string, sessionId: string | undefined, holder: string) {
  if (!sessionId) return
  const session = await store.getSession(organizationId, sessionId)
  if (session) await store.putSession(session, { holder })
}

export interface StaleDeps extends AbandonDeps {
  clock: Clock
  /** The run loop's deadline (RESPONSE_DEADLINE_MS), as the API reserved the run's session with. */
  deadlineMs: number
}

/**
 * A reader's backstop: the response as stored, or `failed` when it was a background run past its
 * time. Not yet taken: its reservation (and so the worker's maximum event age) is over, plus a
 * margin, so no delivery will come. Taken: its worker's lease ended a margin ago. A run that may
 * still be running is returned as it is.
 */
export async function settleStaleRun(response: ResponseObject, deps: StaleDeps): Promise<ResponseObject> {
  if (!isOpen(response)) return response
  const now = deps.clock.now().getTime()
  const reservation = reservationSeconds(deps.deadlineMs)
  // Cheap first: nothing younger than the shortest limit a run may have is ever stale (no write).
  if (response.created_at > Math.floor(now / 1000) - Math.ceil(deps.deadlineMs / 1000) - STALE_MARGIN_SECONDS) return response
  const margin = STALE_MARGIN_SECONDS * 1000
  const failed = await abandonRun(
    response,
    {
      untaken: { createdBy: Math.floor(now / 1000) - reservation - STALE_MARGIN_SECONDS },
      taken: { leaseEndedBy: now - margin, unleasedTakenBy: now - (deps.deadlineMs + RUN_MARGIN_SECONDS * 1000 + margin) },
    },
    {
      untaken:
        `The background run never started: no worker took it within ${reservation} s of being queued ` +
        '(Lambda could not deliver it in time, e.g. the worker was throttled). Nothing ran; start it again.',
      taken:
        'The background worker stopped before it stored this run: it did not report back by the end of its time limit ' +
        '(it timed out, ran out of memory or crashed). The calls shown are those saved before; the session keeps its state from before this run.',
    },
    deps,
  )
  return failed ?? (await deps.store.getResponse(response.organization_id, response.id)) ?? response
}

/**
 * A claim's backstop: `previousHolder`'s claim on a session lapsed and another request has just
 * taken the session over. When that holder was a background run that is still open, no worker
 * can finish it any more (its session writes are refused now), so it is given up if it is over:
 * never taken (its reservation lapsed, and with it the worker's event age), or its worker's lease
 * ended. Anything else (not a response's claim, ended, a worker still within its lease) is left.
 */
export async function settleLapsedClaim(
  store: ResponseStore & SessionStore,
  organizationId: string,
  sessionId: string,
  previousHolder: string,
  clock: Clock,
): Promise<ResponseObject | undefined> {
  const match = RESPONSE_CLAIM.exec(previousHolder)
  if (!match) return undefined
  const stored = await store.getResponse(organizationId, match[1]!)
  if (!stored || !isOpen(stored)) return undefined
  return abandonRun(
    stored,
    { untaken: {}, taken: { leaseEndedBy: clock.now().getTime() } },
    {
      untaken:
        `The background run never started: no worker took it before its claim on session ${sessionId} lapsed, ` +
        'and another request has taken the session. Nothing ran; start it again.',
      taken:
        'The background worker stopped before it stored this run (it timed out, ran out of memory or crashed); ' +
        `its claim on session ${sessionId} lapsed and another request has taken the session, which keeps its state from before this run.`,
    },
    { store },
  )
}

/** True when the store behind a SessionStore also holds responses (the service's one table does). */
export const holdsResponses = (store: SessionStore): store is SessionStore & ResponseStore =>
  typeof (store as Partial<ResponseStore>).abandonRun === 'function' && typeof (store as Partial<ResponseStore>).getResponse === 'function'
