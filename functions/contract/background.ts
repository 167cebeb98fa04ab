/** Background runs between the API and its worker (internal: no client sees these). */
import { z } from 'zod'
import { OrganizationId, SessionId } from './ids'
import { ResponseId, ResponseRequest } from './responses'

/**
 * What the asynchronous invoke of the worker carries: the ids of a job stored beforehand, never
 * the request itself (Lambda takes at most 1 MB asynchronously; a request may be 10 MB).
 */
export const BackgroundTicket = z.strictObject({ organizationId: OrganizationId, responseId: ResponseId })
export type BackgroundTicket = z.infer<typeof BackgroundTicket>

/** A background run as stored for its worker (core/background.ts jobKey). */
export const BackgroundJob = z.strictObject({
  organizationId: OrganizationId,
  keyId: z.string().min(1),
  responseId: ResponseId,
  request: ResponseRequest,
  /** The session the API reserved (claimed for this response id) when it answered 202. */
  sessionId: SessionId.optional(),
})
export type BackgroundJob = z.infer<typeof BackgroundJob>
