import type { ResponseObject, ResponseRequest } from '../contract/responses'
import type { Caller } from './auth'
import { ApiError } from './errors'
import { prepareResponse, type ResponsesDeps } from './responses'

/** A background run, as handed to a worker (in-process locally, an async Lambda deployed). */
export interface BackgroundJob {
  organizationId: string
  keyId: string
  responseId: string
  request: ResponseRequest
  /** The session the API reserved (claimed for this response id) when it answered 202. */
  sessionId?: string
}

/** Starts a background run and returns at once. */
export interface BackgroundRuns {
  start(job: BackgroundJob): Promise<void>
}

/**
 * The worker's side: runs the stored request under its response id, saving progress between
 * steps (GET /v1/responses/{id} shows the calls finished so far) and stopping when cancelled.
 * Whatever happens, the response ends stored with its final status.
 */
export async function runBackgroundJob(job: BackgroundJob, deps: ResponsesDeps): Promise<ResponseObject> {
  const caller: Caller = { organizationId: job.organizationId, keyId: job.keyId }
  try {
    const prepared = await prepareResponse(caller, job.request, deps, { sessionId: job.sessionId })
    return await prepared.run({ responseId: job.responseId, checkpoint: (r) => deps.store.saveProgress(r) })
  } catch (error) {
    const stored = await deps.store.getResponse(job.organizationId, job.responseId)
    const failed: ResponseObject = {
      ...(stored as ResponseObject),
      status: 'failed',
      error: {
        code: error instanceof ApiError ? error.code : 'internal_error',
        message: error instanceof Error ? error.message : String(error),
      },
    }
    await deps.store.putResponse(failed)
    return failed
  }
}

/** Local mode: the same worker code, in this process. */
export class InProcessBackground implements BackgroundRuns {
  private readonly running = new Set<Promise<unknown>>()

  constructor(
    private readonly deps: () => ResponsesDeps,
    private readonly log: (line: string) => void = console.error,
  ) {}

  async start(job: BackgroundJob): Promise<void> {
    const run = runBackgroundJob(job, this.deps())
      .catch((error: Error) => this.log(`background run ${job.responseId} failed: ${error.stack}`))
      .finally(() => this.running.delete(run))
    this.running.add(run)
  }

  /** Waits for the runs in flight (tests, shutdown). */
  async drain(): Promise<void> {
    await Promise.all([...this.running])
  }
}
