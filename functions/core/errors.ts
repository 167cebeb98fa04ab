/** One typed error hierarchy; handlers/http.ts is the one place that maps it to HTTP. */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message)
    this.name = 'ApiError'
  }
}

export const invalidJson = (detail: string) =>
  new ApiError(400, 'invalid_json', `The request body is not valid JSON: ${detail}`)
export const invalidRequest = (message: string, details?: unknown) =>
  new ApiError(400, 'invalid_request', message, details)
export const unauthorized = (message = 'Missing or invalid API key. Send "Authorization: Bearer <key>".') =>
  new ApiError(401, 'unauthorized', message)
export const forbidden = (message: string) => new ApiError(403, 'forbidden', message)

/** The sandbox refused more work right now (pool and queue full, or Lambda throttled). */
export class SandboxBusyError extends ApiError {
  constructor(message = 'All sandboxes are busy and the queue is full; retry shortly.') {
    super(429, 'sandbox_busy', message)
  }
}

/** The sandbox could not run the block at all (not a failure of the user's code). */
export class SandboxUnavailableError extends ApiError {
  constructor(message: string) {
    super(503, 'sandbox_unavailable', message)
  }
}

/** The sandbox answered with something that breaks the contract: never passed through. */
export class SandboxProtocolError extends ApiError {
  constructor(message: string) {
    super(502, 'sandbox_protocol_error', message)
  }
}

export const notFound = (what: string, id: string) => new ApiError(404, 'not_found', `No ${what} ${JSON.stringify(id)} in this organization.`)

export const codeInterpreterNotAvailable = (plan: string) =>
  new ApiError(
    403,
    'code_interpreter_not_available',
    `The code interpreter is not available on the "${plan}" plan. Set the tool's mode to "off", or move the organization to a plan that includes it.`,
  )

export const modelNotConfigured = (hint: string) => new ApiError(503, 'model_not_configured', hint)

export const executionLimitReached = () =>
  new ApiError(429, 'execution_limit_reached', "The organization has run its plan's code blocks for today (UTC).")

export const responseAlreadyEnded = (id: string, status: string) =>
  new ApiError(409, 'response_already_ended', `Response ${id} has already ended (${status}); only a queued or running response can be cancelled.`)

export const idempotentRequestInProgress = () =>
  new ApiError(409, 'idempotent_request_in_progress', 'A request with this Idempotency-Key is still running; retry when it has finished.')

/** A background run could not be handed to its worker; it is stored failed and nothing ran. */
export const backgroundDispatchFailed = (message: string) => new ApiError(503, 'background_not_available', message)

export const backgroundNotAvailable = () =>
  new ApiError(503, 'background_not_available', 'Background runs need the worker function (WORKER_FUNCTION_NAME); use stream: true meanwhile.')

export const fileTooLarge = (bytes: number, limit: number, hint: string) =>
  new ApiError(413, 'file_too_large', `The file is ${bytes} bytes; the limit here is ${limit} bytes. ${hint}`.trim())

export const fileNotReady = (id: string) =>
  new ApiError(409, 'file_not_ready', `File ${id} is still waiting for its upload; complete it with POST /v1/files/uploads/${id}/complete.`)

export const duplicateFileName = (name: string) =>
  new ApiError(400, 'duplicate_file_name', `Two of the files given are named ${JSON.stringify(name)}; the code finds files by name, so names must differ.`)

export const sessionExpired = (id: string, at: number) =>
  new ApiError(410, 'session_expired', `Session ${id} expired on ${new Date(at * 1000).toISOString()} after being idle; its Python state is gone. Start a new session.`)

export const unsupportedMediaType = (message: string) => new ApiError(415, 'unsupported_media_type', message)

export const sessionBusy = (id: string) =>
  new ApiError(409, 'session_busy', `Session ${id} is running another request; a session runs one at a time. Retry when it has finished.`)

export const fileContentMissing = (id: string) =>
  new ApiError(410, 'file_content_missing', `The bytes of file ${id} are no longer stored.`)
