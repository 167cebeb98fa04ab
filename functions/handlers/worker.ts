/** Lambda entry point of the background worker: runs one queued response (see core/background.ts). */
import { z } from 'zod'
import { OrganizationId } from '../contract/api'
import { ResponseId, ResponseRequest, SessionId } from '../contract/responses'
import { loadApiConfig } from '../config'
import { runBackgroundJob } from '../core/background'
import { createDeps, responsesDepsOf } from './deps'

const Job = z.object({
  organizationId: OrganizationId,
  keyId: z.string().min(1),
  responseId: ResponseId,
  request: ResponseRequest,
  /** The session the API reserved for this run when it answered 202. */
  sessionId: SessionId.optional(),
})
const responsesDeps = responsesDepsOf(createDeps(loadApiConfig()))

export const handler = async (event: unknown) => {
  const job = Job.parse(event)
  const response = await runBackgroundJob(job, responsesDeps)
  return { response_id: response.id, status: response.status }
}
