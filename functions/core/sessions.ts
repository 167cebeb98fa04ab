/**
 * Sessions: Python state and generated files that outlive one request. State lives in
 * storage, not in a running sandbox, so a session lasts until it has been idle for its plan's
 * limit (7 days by default), and a caller then gets 410 session_expired, never a silent reset.
 */
import type { SessionObject } from '../contract/api'
import { holdsResponses, settleLapsedClaim } from './abandoned-runs'
import type { Caller } from './auth'
import { notFound, sessionBusy, sessionExpired } from './errors'
import { newId } from './ids'
import type { BlobStore, Clock } from './ports'
import type { SessionRecord, SessionStore } from './stores'

export interface SessionsDeps {
  sessions: SessionStore
  blobs: BlobStore
  clock: Clock
}

const DAY = 86_400

export const SESSION_LOST =
  'the Python state and files of this request were not saved: the session was deleted, or taken over after this request outlived its claim'
const nowSeconds = (clock: Clock) => Math.floor(clock.now().getTime() / 1000)

export function newSession(organizationId: string, idleDays: number, clock: Clock, id = newId('sess')): SessionRecord {
  const now = nowSeconds(clock)
  return { id, organization_id: organizationId, created_at: now, last_active_at: now, idle_seconds: idleDays * DAY, files: {} }
}

export function sessionObject(s: SessionRecord): SessionObject {
  return {
    id: s.id,
    object: 'session',
    organization_id: s.organization_id,
    created_at: s.created_at,
    last_active_at: s.last_active_at,
    expires_at: s.last_active_at + s.idle_seconds,
    files: Object.entries(s.files).map(([filename, file_id]) => ({ filename, file_id })),
  }
}

/** Keys of the blob store that hold this session's state. */
export const stateKeys = (s: Pick<SessionRecord, 'state'>) => (s.state?.parts ?? []).flatMap((p) => (p.key ? [p.key] : []))

/** The session if it is alive: 404 when the organization has no such session, 410 once it expired. */
export async function liveSession(organizationId: string, id: string, deps: SessionsDeps): Promise<SessionRecord> {
  const session = await deps.sessions.getSession(organizationId, id)
  if (!session) throw notFound('session', id)
  const expiresAt = session.last_active_at + session.idle_seconds
  if (nowSeconds(deps.clock) > expiresAt) {
    // Its state is gone for good; the record stays a while so callers hear why.
    const keys = stateKeys(session)
    if (keys.length || session.state) {
      await deps.blobs.delete(keys).catch(() => undefined)
      await deps.sessions.putSession({ ...session, state: undefined })
    }
    throw sessionExpired(id, expiresAt)
  }
  return session
}

/**
 * Takes the session for one request (creating it when `create`): the session as stored now,
 * 409 session_busy while another request holds it, 404 when it is gone. Taking over a lapsed
 * claim of a background run that no worker will finish ends that run `failed`
 * (abandoned-runs.ts settleLapsedClaim).
 */
export async function claimSession(
  deps: Pick<SessionsDeps, 'sessions' | 'clock'>,
  session: SessionRecord,
  holder: string,
  seconds: number,
  create: boolean,
): Promise<SessionRecord> {
  const now = nowSeconds(deps.clock)
  const lapsed: { holder?: string } = {}
  const claimed = await deps.sessions.claimSession(session, holder, now + seconds, now, create, (previous) => (lapsed.holder = previous))
  if (claimed === 'busy') throw sessionBusy(session.id)
  if (claimed === 'missing') throw notFound('session', session.id)
  if (lapsed.holder && holdsResponses(deps.sessions)) {
    // Best effort: the claim is this request's either way; a reader's backstop catches the rest.
    await settleLapsedClaim(deps.sessions, session.organization_id, session.id, lapsed.holder, deps.clock).catch(() => undefined)
  }
  return claimed
}

/**
 * Lets go of `holder`'s claim on the session, keeping the session as stored. Nothing happens when
 * the claim is no longer the holder's (released already, or taken over after it lapsed).
 */
export async function releaseSession(sessions: SessionStore, organizationId: string, id: string, holder: string): Promise<void> {
  const stored = await sessions.getSession(organizationId, id)
  if (stored) await sessions.putSession(stored, { holder }).catch(() => false)
}

export async function createSession(caller: Caller, idleDays: number, deps: SessionsDeps): Promise<SessionObject> {
  const session = newSession(caller.organizationId, idleDays, deps.clock)
  await deps.sessions.putSession(session)
  return sessionObject(session)
}

export async function getSession(caller: Caller, id: string, deps: SessionsDeps): Promise<SessionObject> {
  return sessionObject(await liveSession(caller.organizationId, id, deps))
}

export async function deleteSession(caller: Caller, id: string, deps: SessionsDeps) {
  const session = await deps.sessions.getSession(caller.organizationId, id)
  if (!session) throw notFound('session', id)
  await deps.blobs.delete(stateKeys(session))
  await deps.sessions.deleteSession(caller.organizationId, id)
  return { id, object: 'session', deleted: true }
}
