import type { ResponseObject, ResponseRequest, ToolSpec } from '../contract/responses'
import { MODEL_NOT_CONFIGURED_HINT } from './model'
import type { Caller } from './auth'
import { assertOrganization } from './auth'
import type { ToolFacts } from './code-interpreter-tool'
import { codeInterpreterNotAvailable, modelNotConfigured, notFound } from './errors'
import { newId } from './ids'
import type { ModelProvider } from './model'
import type { Plans } from './plans'
import type { Clock, Sandbox } from './ports'
import { type RunEvent, runResponse } from './run-loop'
import type { AssistantStore, FileStore, OrganizationStore, ResponseStore, SessionRecord, SessionStore, UsageMeter } from './stores'
import type { BlobStore } from './ports'
import { resolveFiles } from './files'
import { claimSession, liveSession, newSession, releaseSession, SESSION_LOST } from './sessions'
import { type UploadSlots, Workspace, type WorkspaceDeps } from './workspace'

export interface ResponsesDeps {
  model?: ModelProvider
  sandbox: Sandbox
  store: ResponseStore & SessionStore
  assistants: AssistantStore
  orgs: OrganizationStore
  meter: UsageMeter
  clock: Clock
  plans: Plans
  /** Plan of an organization that has no record (e.g. created only by issuing a key). */
  defaultPlan: string
  facts: ToolFacts
  limits: { maxCodeBlocks: number; deadlineMs: number; codeTimeoutMs: number }
  files: FileStore
  blobs: BlobStore
  slots: UploadSlots
}

/** The request's tools override the assistant's; with a code interpreter in neither, it is off. */
export function effectiveMode(requestTools: ToolSpec[] | undefined, assistantTools: ToolSpec[]): ToolSpec['mode'] {
  const tools = requestTools ?? assistantTools
  return tools.find((t) => t.type === 'code_interpreter')?.mode ?? 'off'
}

/** A response's claim on its session is named after it, so a reservation carries to its run. */
export const responseClaim = (responseId: string) => `claim_${responseId}`

export async function createResponse(
  caller: Caller,
  request: ResponseRequest,
  deps: ResponsesDeps,
  onEvent?: (event: RunEvent) => void,
): Promise<ResponseObject> {
  return (await prepareResponse(caller, request, deps)).run({ onEvent })
}

export interface PreparedResponse {
  /** The response as it stands before the run: status `queued`, no output. */
  queued(id: string): ResponseObject
  /** The session this response uses. */
  sessionId: string
  /** Claims (or creates) the session for the response `responseId` ahead of its run (background: 409 now, not later). */
  reserve(responseId: string): Promise<void>
  /** Lets go of what `reserve` claimed, when the run will not happen (its dispatch failed). */
  release(responseId: string): Promise<void>
  run(options?: { onEvent?: (event: RunEvent) => void; responseId?: string; checkpoint?: (r: ResponseObject) => Promise<boolean> }): Promise<ResponseObject>
}

/**
 * Checks everything a request can be refused for (4xx) and returns the run itself, so a
 * streaming caller answers errors as JSON before it starts the event stream.
 */
export async function prepareResponse(
  caller: Caller,
  request: ResponseRequest,
  deps: ResponsesDeps,
  /** A background worker's: the session the API reserved for the run. */
  reserved: { sessionId?: string } = {},
): Promise<PreparedResponse> {
  assertOrganization(caller, request.organization_id)
  const org = caller.organizationId
  const assistant = await deps.assistants.getAssistant(org, request.assistant_id)
  if (!assistant) throw notFound('assistant', request.assistant_id)
  const mode = effectiveMode(request.tools, assistant.tools)
  const planName = (await deps.orgs.getOrganization(org))?.plan ?? deps.defaultPlan
  const plan = deps.plans[planName]
  if (mode !== 'off' && !plan?.code_interpreter) throw codeInterpreterNotAvailable(planName)
  const model = deps.model
  if (!model) throw modelNotConfigured(MODEL_NOT_CONFIGURED_HINT)
  const idleDays = plan?.session_idle_days ?? 7
  const workspaceDeps: WorkspaceDeps = { files: deps.files, blobs: deps.blobs, sessions: deps.store, clock: deps.clock, slots: deps.slots }
  // previous_response_id continues that response's conversation and session.
  let history: { role: 'user' | 'assistant'; content: string }[] = []
  let previousSession: string | undefined
  if (request.previous_response_id) {
    const previous = await deps.store.getResponse(org, request.previous_response_id)
    if (!previous) throw notFound('response', request.previous_response_id)
    history = (await deps.store.getConversation(org, previous.id))?.messages ?? []
    previousSession = previous.session_id
  }
  const named = reserved.sessionId ?? request.session_id ?? previousSession
  let session: SessionRecord
  let created = false
  if (named === undefined) {
    session = newSession(org, idleDays, deps.clock)
    created = true
  } else if (named === previousSession && !reserved.sessionId && !(await deps.store.getSession(org, named))) {
    // A response that ended before its session was saved leaves none: continue under its id.
    session = newSession(org, idleDays, deps.clock, named)
    created = true
  } else {
    session = await liveSession(org, named, workspaceDeps)
  }
  const inputs = [...history, ...request.inputs]
  const files = await resolveFiles(org, [...assistant.file_ids, ...(request.file_ids ?? [])], deps)
  const tools = request.tools ?? assistant.tools
  const queued = (id: string): ResponseObject => ({
    id,
    object: 'response',
    status: 'queued',
    organization_id: org,
    assistant_id: assistant.id,
    model: assistant.model ?? model.defaultModel,
    created_at: Math.floor(deps.clock.now().getTime() / 1000),
    tools,
    output: [],
    usage: { input_tokens: 0, output_tokens: 0, total_tokens: 0, code_blocks: 0, sandbox_ms: 0 },
    session_id: session.id,
    ...(request.schedule ? { schedule: request.schedule } : {}),
    ...(request.previous_response_id ? { previous_response_id: request.previous_response_id } : {}),
  })
  const claimSeconds = Math.ceil(deps.limits.deadlineMs / 1000) + 60
  const holderOf = (responseId?: string) => (responseId ? responseClaim(responseId) : undefined)
  const reserve: PreparedResponse['reserve'] = async (responseId) => {
    await claimSession({ sessions: deps.store, clock: deps.clock }, session, responseClaim(responseId), claimSeconds, created)
    created = false
  }
  const release: PreparedResponse['release'] = (responseId) => releaseSession(deps.store, org, session.id, responseClaim(responseId))
  const run: PreparedResponse['run'] = async ({ onEvent, responseId, checkpoint } = {}) => {
  // The session is claimed for the run (one request at a time): 409 session_busy otherwise.
  const workspace = await Workspace.open(workspaceDeps, {
    organizationId: org,
    inputs: files,
    session,
    newSession: created,
    // Streams and background runs show the new session's id before they end.
    claimNew: Boolean(request.stream || request.background),
    claimSeconds,
    holder: holderOf(responseId),
    source: { session_id: session.id },
  })
  let response: ResponseObject
  try {
  ;({ response } = await runResponse(
    {
      responseId,
      organizationId: org,
      sessionId: session.id,
      workspace,
      assistantId: assistant.id,
      instructions: assistant.instructions,
      model: assistant.model,
      mode,
      tools,
      inputs,
    },
    { model, sandbox: deps.sandbox, meter: deps.meter, clock: deps.clock, facts: deps.facts, onEvent, checkpoint },
    {
      maxCodeBlocks: Math.min(plan?.max_code_blocks_per_response ?? 0, deps.limits.maxCodeBlocks),
      maxExecutionsPerDay: plan?.max_executions_per_day ?? 0,
      deadlineMs: deps.limits.deadlineMs,
      codeTimeoutMs: deps.limits.codeTimeoutMs,
    },
  ))
  } catch (error) {
    await workspace.release()
    throw error
  }
  if (request.schedule) response.schedule = request.schedule
  if (request.previous_response_id) response.previous_response_id = request.previous_response_id
  const answer = [...response.output].reverse().find((o) => o.type === 'message')
  const conversation = {
    messages: [...inputs, ...(answer?.type === 'message' ? [{ role: 'assistant' as const, content: answer.content.map((c) => c.text).join('') }] : [])],
  }
  const [saved] = await Promise.all([workspace.persist(idleDays), deps.store.putResponse(response, conversation)])
  if (!saved) {
    response.session_notice = `The session was not updated: ${SESSION_LOST}.`
    await deps.store.putResponse(response, conversation)
  }
  return response
  }
  return { queued, run, reserve, release, sessionId: session.id }
}


export async function listResponses(caller: Caller, store: ResponseStore, options: { schedule?: string; limit: number; after?: string }) {
  const data = await store.listResponses(caller.organizationId, { ...options, limit: options.limit + 1 })
  const page = data.slice(0, options.limit)
  return { object: 'list', data: page, has_more: data.length > options.limit, last_id: page.at(-1)?.id ?? null }
}

export async function getResponse(caller: Caller, id: string, store: ResponseStore): Promise<ResponseObject> {
  const response = await store.getResponse(caller.organizationId, id)
  if (!response) throw notFound('response', id)
  return response
}
