import type { ResponseObject, ResponseRequest, ToolSpec } from '../contract/responses'
import { MODEL_NOT_CONFIGURED_HINT } from './model'
import type { Caller } from './auth'
import { assertOrganization } from './auth'
import type { ToolFacts } from './code-interpreter-tool'
import { codeInterpreterNotAvailable, modelNotConfigured, notFound } from './errors'
import type { ModelProvider } from './model'
import type { Plans } from './plans'
import type { Clock, Sandbox } from './ports'
import { runResponse } from './run-loop'
import type { AssistantStore, OrganizationStore, ResponseStore, UsageMeter } from './stores'

export interface ResponsesDeps {
  model?: ModelProvider
  sandbox: Sandbox
  store: AssistantStore & ResponseStore
  orgs: OrganizationStore
  meter: UsageMeter
  clock: Clock
  plans: Plans
  /** Plan of an organization that has no record (e.g. created only by issuing a key). */
  defaultPlan: string
  facts: ToolFacts
  limits: { maxCodeBlocks: number; deadlineMs: number; codeTimeoutMs: number }
}

/** The request's tools override the assistant's; with a code interpreter in neither, it is off. */
export function effectiveMode(requestTools: ToolSpec[] | undefined, assistantTools: ToolSpec[]): ToolSpec['mode'] {
  const tools = requestTools ?? assistantTools
  return tools.find((t) => t.type === 'code_interpreter')?.mode ?? 'off'
}

export async function createResponse(caller: Caller, request: ResponseRequest, deps: ResponsesDeps): Promise<ResponseObject> {
  assertOrganization(caller, request.organization_id)
  const org = caller.organizationId
  const assistant = await deps.store.getAssistant(org, request.assistant_id)
  if (!assistant) throw notFound('assistant', request.assistant_id)
  const mode = effectiveMode(request.tools, assistant.tools)
  const planName = (await deps.orgs.getOrganization(org))?.plan ?? deps.defaultPlan
  const plan = deps.plans[planName]
  if (mode !== 'off' && !plan?.code_interpreter) throw codeInterpreterNotAvailable(planName)
  if (!deps.model) throw modelNotConfigured(MODEL_NOT_CONFIGURED_HINT)
  const response = await runResponse(
    {
      organizationId: org,
      assistantId: assistant.id,
      instructions: assistant.instructions,
      model: assistant.model,
      mode,
      tools: request.tools ?? assistant.tools,
      inputs: request.inputs,
    },
    { model: deps.model, sandbox: deps.sandbox, meter: deps.meter, clock: deps.clock, facts: deps.facts },
    {
      maxCodeBlocks: Math.min(plan?.max_code_blocks_per_response ?? 0, deps.limits.maxCodeBlocks),
      maxExecutionsPerDay: plan?.max_executions_per_day ?? 0,
      deadlineMs: deps.limits.deadlineMs,
      codeTimeoutMs: deps.limits.codeTimeoutMs,
    },
  )
  if (request.schedule) response.schedule = request.schedule
  await deps.store.putResponse(response)
  return response
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
