/** Lambda entry point of the background worker: runs one queued response (see core/background.ts). */
import type { Context } from 'aws-lambda'
import { BackgroundTicket } from '../contract/background'
import { loadApiConfig } from '../config'
import { runBackgroundTicket } from '../core/background'
import { type ApiDeps, createDeps, responsesDepsOf } from './deps'

/**
 * The event is the ticket the API dispatched ({organizationId, responseId}); the job is loaded
 * from the store. A repeated delivery of the same ticket answers `skipped` and runs nothing.
 * Taking the run records this invocation's request id and the time Lambda leaves it, so that a
 * worker that dies (timeout, out of memory, crash) is recognised: by the failure destination
 * (functions/handlers/failed-runs.ts), which Lambda tells this request id, and by readers once
 * the time is over (core/abandoned-runs.ts).
 */
export function createWorkerHandler(deps: ApiDeps) {
  const responsesDeps = responsesDepsOf(deps)
  return async (event: unknown, context?: Pick<Context, 'awsRequestId' | 'getRemainingTimeInMillis'>) =>
    runBackgroundTicket(
      BackgroundTicket.parse(event),
      responsesDeps,
      context ? { id: context.awsRequestId, remainingMs: context.getRemainingTimeInMillis() } : {},
    )
}

export const handler = createWorkerHandler(createDeps(loadApiConfig()))
