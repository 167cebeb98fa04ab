import type { Assistant, AssistantCreate, AssistantUpdate } from '../contract/responses'
import { assertOrganization, type Caller } from './auth'
import { notFound } from './errors'
import { newId } from './ids'
import type { Clock } from './ports'
import type { AssistantStore } from './stores'

const now = (clock: Clock) => Math.floor(clock.now().getTime() / 1000)

export async function createAssistant(caller: Caller, body: AssistantCreate, store: AssistantStore, clock: Clock): Promise<Assistant> {
  assertOrganization(caller, body.organization_id)
  const at = now(clock)
  const assistant: Assistant = {
    id: newId('asst'),
    object: 'assistant',
    organization_id: caller.organizationId,
    name: body.name,
    instructions: body.instructions,
    ...(body.model ? { model: body.model } : {}),
    tools: body.tools,
    file_ids: body.file_ids,
    created_at: at,
    updated_at: at,
  }
  await store.putAssistant(assistant)
  return assistant
}

export async function getAssistant(caller: Caller, id: string, store: AssistantStore): Promise<Assistant> {
  const assistant = await store.getAssistant(caller.organizationId, id)
  if (!assistant) throw notFound('assistant', id)
  return assistant
}

export async function updateAssistant(caller: Caller, id: string, patch: AssistantUpdate, store: AssistantStore, clock: Clock) {
  assertOrganization(caller, patch.organization_id)
  const current = await getAssistant(caller, id, store)
  const { organization_id: _ignored, model, ...rest } = patch
  const next: Assistant = { ...current, ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)), updated_at: now(clock) }
  if (model === null) delete next.model
  else if (model !== undefined) next.model = model
  await store.putAssistant(next)
  return next
}

export async function deleteAssistant(caller: Caller, id: string, store: AssistantStore) {
  if (!(await store.deleteAssistant(caller.organizationId, id))) throw notFound('assistant', id)
  return { id, object: 'assistant.deleted', deleted: true }
}

export async function listAssistants(caller: Caller, store: AssistantStore, limit: number, after?: string) {
  const data = await store.listAssistants(caller.organizationId, limit + 1, after)
  return { object: 'list', data: data.slice(0, limit), has_more: data.length > limit, last_id: data.slice(0, limit).at(-1)?.id ?? null }
}
