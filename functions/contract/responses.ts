/** Assistant requests, responses and assistants: the names follow the product brief. */
import { z } from 'zod'
import { FileIds, PublicOutputItem } from './files'
import { OrganizationId, SessionId } from './ids'
import { MAX_CODE_CHARS } from './sandbox'

export const AssistantId = z.string().regex(/^asst_[A-Za-z0-9_-]{1,64}$/, 'must look like asst_<id>')
export { SessionId }
export const ResponseId = z.string().regex(/^resp_[A-Za-z0-9_-]{1,64}$/, 'must look like resp_<id>')
export const ScheduleName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'letters, digits, _ and -, at most 64')
export const CodeInterpreterMode = z.enum(['auto', 'on', 'off'])

/** A tool entry; only the code interpreter exists today, and an unknown type is a 400. */
export const ToolSpec = z
  .object({
    type: z.literal('code_interpreter', { error: 'unknown tool type: only "code_interpreter" is supported' }),
    mode: CodeInterpreterMode.default('auto'),
  })
  .strict()
export type ToolSpec = z.infer<typeof ToolSpec>

export const InputMessage = z
  .object({
    role: z.enum(['user', 'assistant']),
    content: z.string().min(1, 'must not be empty').max(200_000),
  })
  .strict()

export const ResponseRequest = z
  .object({
    organization_id: OrganizationId.optional(),
    assistant_id: AssistantId,
    tools: z.array(ToolSpec).max(8).optional(),
    inputs: z.array(InputMessage).min(1, 'needs at least one message').max(200),
    /** The scheduled analysis that made this request; GET /v1/responses?schedule=NAME lists them. */
    schedule: ScheduleName.optional(),
    /** Python state (and nothing else) carries over between responses of one session. */
    session_id: SessionId.optional(),
    /** Continue that response: its conversation and its session's Python state. */
    previous_response_id: ResponseId.optional(),
    /** Files readable by the code (added to the assistant's file_ids). */
    file_ids: FileIds.optional(),
    /** Answer with server-sent events as the run goes (text/event-stream). */
    stream: z.boolean().optional(),
    /** Answer 202 at once with the response `queued`; poll GET /v1/responses/{id}. */
    background: z.boolean().optional(),
  })
  .strict()
  .refine((r) => !(r.stream && r.background), { message: 'give stream or background, not both', path: ['background'] })
  .refine((r) => !(r.session_id && r.previous_response_id), {
    message: 'give session_id or previous_response_id, not both (a response already belongs to a session)',
    path: ['previous_response_id'],
  })
  .refine((r) => r.inputs.at(-1)?.role === 'user', { message: 'the last input must come from the user', path: ['inputs'] })
export type ResponseRequest = z.infer<typeof ResponseRequest>

export const CodeInterpreterCall = z.object({
  type: z.literal('code_interpreter_call'),
  id: z.string(),
  status: z.enum(['completed', 'failed', 'timed_out']),
  code: z.string().max(MAX_CODE_CHARS),
  outputs: z.array(PublicOutputItem),
  duration_ms: z.number(),
})
export type CodeInterpreterCall = z.infer<typeof CodeInterpreterCall>

export const MessageItem = z.object({
  type: z.literal('message'),
  role: z.literal('assistant'),
  content: z.array(z.object({ type: z.literal('output_text'), text: z.string() })),
})
export type MessageItem = z.infer<typeof MessageItem>

/** queued and in_progress: a background run (or a stream) that has not ended yet. */
export type ResponseStatus = 'queued' | 'in_progress' | 'completed' | 'incomplete' | 'failed' | 'cancelled'

export interface ResponseUsage {
  input_tokens: number
  output_tokens: number
  total_tokens: number
  code_blocks: number
  sandbox_ms: number
}

export interface ResponseObject {
  id: string
  object: 'response'
  status: ResponseStatus
  organization_id: string
  assistant_id: string
  model: string
  created_at: number
  tools: ToolSpec[]
  output: (CodeInterpreterCall | MessageItem)[]
  usage: ResponseUsage
  incomplete_details?: { reason: string }
  /** Set when a scheduled analysis made it. */
  schedule?: string
  /** The session whose Python state this response used and updated. */
  session_id: string
  previous_response_id?: string
  /** Set when the session could not be updated after this response (it was deleted meanwhile). */
  session_notice?: string
  error?: { code: string; message: string }
}

export const AssistantCreate = z
  .object({
    organization_id: OrganizationId.optional(),
    name: z.string().min(1).max(256),
    instructions: z.string().max(32_000).default(''),
    model: z.string().min(1).max(256).optional(),
    tools: z.array(ToolSpec).max(8).default([]),
    file_ids: FileIds.default([]),
  })
  .strict()
export type AssistantCreate = z.infer<typeof AssistantCreate>

export const AssistantUpdate = z
  .object({
    organization_id: OrganizationId.optional(),
    name: z.string().min(1).max(256).optional(),
    instructions: z.string().max(32_000).optional(),
    model: z.string().min(1).max(256).nullable().optional(),
    tools: z.array(ToolSpec).max(8).optional(),
    file_ids: FileIds.optional(),
  })
  .strict()
export type AssistantUpdate = z.infer<typeof AssistantUpdate>

export interface Assistant {
  id: string
  object: 'assistant'
  organization_id: string
  name: string
  instructions: string
  model?: string
  tools: ToolSpec[]
  file_ids: string[]
  created_at: number
  updated_at: number
}
