import type { FileObject } from '../contract/files'
import type { Assistant, ResponseObject } from '../contract/responses'

export interface Organization {
  id: string
  plan: string
  name?: string
  created_at: number
}

export interface OrganizationStore {
  getOrganization(id: string): Promise<Organization | undefined>
  putOrganization(org: Organization): Promise<void>
}

export interface AssistantStore {
  putAssistant(assistant: Assistant): Promise<void>
  getAssistant(organizationId: string, id: string): Promise<Assistant | undefined>
  listAssistants(organizationId: string, limit: number, after?: string): Promise<Assistant[]>
  /** True when it existed. */
  deleteAssistant(organizationId: string, id: string): Promise<boolean>
}

export interface ResponseStore {
  /** Stores the response; never over one abandonRun gave up (that `failed` stays, see there). */
  putResponse(response: ResponseObject, conversation?: Conversation): Promise<void>
  getConversation(organizationId: string, id: string): Promise<Conversation | undefined>
  getResponse(organizationId: string, id: string): Promise<ResponseObject | undefined>
  /**
   * Stores a running response's progress; answers whether the run must stop: a cancel was
   * requested meanwhile, or the run was given up (abandonRun), when nothing is stored.
   */
  saveProgress(response: ResponseObject): Promise<boolean>
  /**
   * Takes a queued response for one worker run: true once; false when it is not queued (ended,
   * failed to start, given up) or another delivery of the same run took it already. `lease`
   * records until when that worker may run and which invocation it is (see abandonRun).
   */
  takeQueued(organizationId: string, id: string, lease?: RunLease): Promise<boolean>
  /**
   * Gives up a background run that no worker will finish: stores `failed` (the response given)
   * in its place, atomically and only while it is still queued or in progress and `when` holds.
   * From then on putResponse and saveProgress leave it as it is, so a worker that turns up late
   * cannot bring it back. False when the condition failed (it ended, or may still be running).
   */
  abandonRun(failed: ResponseObject, when: AbandonWhen): Promise<boolean>
  /** Marks a stored response for cancelling; false when there is no such response. */
  requestCancel(organizationId: string, id: string): Promise<boolean>
  /** The response id an earlier request with this idempotency key got, or claims the key for `responseId`. */
  claimIdempotencyKey(organizationId: string, keyHash: string, responseId: string, now: Date): Promise<string | undefined>
  /** Newest first; with `schedule`, only the responses that schedule made. */
  listResponses(organizationId: string, options: { schedule?: string; limit: number; after?: string }): Promise<ResponseObject[]>
}

/** What a worker records when it takes a run (ResponseStore.takeQueued). */
export interface RunLease {
  /** Until when (ms since the epoch) the worker may still be running: its hard time limit. */
  until: number
  /** The invocation that took it (Lambda's request id), when known. */
  by?: string
}

/** No worker took the run, and it was created at or before `createdBy` (unix seconds; any age without). */
export interface UntakenRun {
  createdBy?: number
}

/** A worker took the run and is over: */
export interface TakenRun {
  /** its lease ended at or before this (ms since the epoch), */
  leaseEndedBy: number
  /** or, whatever its lease, this invocation took it (and is known to have ended), */
  by?: string
  /** or it was taken without a lease (by a worker from before leases) at or before this (ms). */
  unleasedTakenBy?: number
}

/** When abandonRun may give a run up: one of the two cases, matched against the stored run. */
export type AbandonWhen = { untaken: UntakenRun } | { taken: TakenRun }

export interface UsageMeter {
  /** Counts one code block for the organization today; false when the daily limit is reached. */
  tryConsumeExecution(organizationId: string, limitPerDay: number, now: Date): Promise<boolean>
}

export interface KeyAdmin {
  listKeys(organizationId: string): Promise<{ keyId: string; createdAt: string; revokedAt?: string }[]>
  /** True when the key existed and is now revoked. */
  revokeKey(organizationId: string, keyId: string): Promise<boolean>
}

/** One part of a stored Python state: inline while small, else an object in the blob store. */
export interface StatePartRecord {
  sha256: string
  bytes: number
  data?: string
  key?: string
}

export interface SessionRecord {
  id: string
  organization_id: string
  created_at: number
  last_active_at: number
  /** The plan's idle limit when the session was last used (seconds). */
  idle_seconds: number
  state?: { parts: StatePartRecord[] }
  /** Files the session's code generated, by name (the latest of each name). */
  files: Record<string, string>
}

export interface SessionStore {
  getSession(organizationId: string, id: string): Promise<SessionRecord | undefined>
  /**
   * Takes the session for one request until `until` (unix seconds), or creates it taken when
   * `create`. Returns the session as stored now, 'busy' while another request holds it, or
   * 'missing'.
   */
  claimSession(
    session: SessionRecord,
    holder: string,
    until: number,
    now: number,
    create: boolean,
    /** Told the holder of a lapsed claim this one replaced (not called for the same holder). */
    tookOver?: (previousHolder: string) => void,
  ): Promise<SessionRecord | 'busy' | 'missing'>
  /**
   * Saves the session: with `holder`, only while that claim still holds, releasing it; with
   * `create`, only if it does not exist yet. False when that condition failed.
   */
  putSession(session: SessionRecord, condition?: { holder: string } | { create: true }): Promise<boolean>
  /** True when it existed. */
  deleteSession(organizationId: string, id: string): Promise<boolean>
}

export interface FileStore {
  putFile(file: FileObject & { key: string }): Promise<void>
  getFile(organizationId: string, id: string): Promise<(FileObject & { key: string }) | undefined>
  /** Newest first. */
  listFiles(organizationId: string, options: { limit: number; after?: string; purpose?: string }): Promise<FileObject[]>
  /** True when it existed. */
  deleteFile(organizationId: string, id: string): Promise<boolean>
}

/** What a stored response remembers of its conversation, for previous_response_id. */
export interface Conversation {
  messages: { role: 'user' | 'assistant'; content: string }[]
}
