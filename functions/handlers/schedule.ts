/**
 * Lambda entry point of the scheduled analyses (see lib/constructs/schedules.ts). EventBridge
 * Scheduler invokes it asynchronously with the schedule's stored request; the request runs
 * through the same run loop as POST /v1/responses and is stored as a response tagged with the
 * schedule's name (GET /v1/responses?schedule=NAME lists them).
 *
 * Failures: a response with status "failed" is stored first, then the handler throws, so Lambda
 * retries the run (asynchronous invocation) and finally sends the event to the dead-letter queue.
 * An invalid event throws a ScheduleInputError whose message says that retrying cannot help.
 */
import type { z } from 'zod'
import type { ResponseObject } from '../contract/responses'
import { OrganizationId } from '../contract/api'
import { ResponseRequest, ScheduleName } from '../contract/responses'
import { loadApiConfig } from '../config'
import { createResponse } from '../core/responses'
import { type ApiDeps, createDeps, responsesDepsOf } from './deps'
import { describeIssue } from './http'

/** The event: ResponseRequest with the organization and the schedule's name required. */
export const ScheduleEvent = ResponseRequest.safeExtend({ organization_id: OrganizationId, schedule: ScheduleName })
export type ScheduleEvent = z.infer<typeof ScheduleEvent>

/** The event itself is wrong: every retry would fail the same way. */
export class ScheduleInputError extends Error {
  constructor(message: string) {
    super(`Invalid scheduled event (not retryable: fix the schedule's input in cdk.json): ${message}`)
    this.name = 'ScheduleInputError'
  }
}

/** The run ended with status "failed"; the response is stored, the throw makes Lambda retry. */
export class ScheduledRunFailedError extends Error {
  constructor(readonly response: ResponseObject) {
    super(
      `Scheduled analysis "${response.schedule}" failed: response ${response.id}` +
        (response.error ? ` (${response.error.code}: ${response.error.message})` : ''),
    )
    this.name = 'ScheduledRunFailedError'
  }
}

export function parseScheduleEvent(event: unknown): ScheduleEvent {
  const parsed = ScheduleEvent.safeParse(event)
  if (parsed.success) return parsed.data
  throw new ScheduleInputError(describeIssue(parsed.error, 'event'))
}

export interface ScheduleResult {
  schedule: string
  response_id: string
  status: ResponseObject['status']
}

export function createScheduleHandler(deps: ApiDeps, log: (line: string) => void = console.log) {
  const responsesDeps = responsesDepsOf(deps)
  return async (event: unknown): Promise<ScheduleResult> => {
    const { schedule: name, ...request } = parseScheduleEvent(event)
    const response = await createResponse(
      { organizationId: request.organization_id, keyId: `schedule:${name}` },
      { ...request, schedule: name },
      responsesDeps,
    )
    log(JSON.stringify({ schedule: name, organization_id: response.organization_id, response_id: response.id, status: response.status }))
    if (response.status === 'failed') throw new ScheduledRunFailedError(response)
    return { schedule: name, response_id: response.id, status: response.status }
  }
}

export const handler = createScheduleHandler(createDeps(loadApiConfig()))
