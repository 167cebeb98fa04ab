/** Lambda entry point of the background worker: runs one queued response (see core/background.ts). */
import { BackgroundTicket } from '../contract/background'
import { loadApiConfig } from '../config'
import { runBackgroundTicket } from '../core/background'
import { type ApiDeps, createDeps, responsesDepsOf } from './deps'

/**
 * The event is the ticket the API dispatched ({organizationId, responseId}); the job is loaded
 * from the store. A repeated delivery of the same ticket answers `skipped` and runs nothing.
 */
export function createWorkerHandler(deps: ApiDeps) {
  const responsesDeps = responsesDepsOf(deps)
  return async (event: unknown) => runBackgroundTicket(BackgroundTicket.parse(event), responsesDeps)
}

export const handler = createWorkerHandler(createDeps(loadApiConfig()))
