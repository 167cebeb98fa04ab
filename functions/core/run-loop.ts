import type { PublicOutputItem } from '../contract/files'
import type { OutputItem, SandboxResult } from '../contract/sandbox'
import type { CodeInterpreterCall, MessageItem, ResponseObject, ResponseUsage, ToolSpec } from '../contract/responses'
import { codeInterpreterTool, CODE_TOOL_NAME, systemPrompt, type ToolFacts } from './code-interpreter-tool'
import { ApiError } from './errors'
import { newId } from './ids'
import type { ChatMessage, ContentBlock, ModelProvider, ToolResultContent } from './model'
import { ModelError } from './model'
import type { Clock, Sandbox } from './ports'
import type { UsageMeter } from './stores'
import type { Workspace } from './workspace'

/** Text of one block's outputs sent back to the model is capped: the user still gets it all. */
const MAX_TOOL_RESULT_CHARS = 20_000

export interface RunLimits {
  /** Code blocks per response (the plan's, never above the service's). */
  maxCodeBlocks: number
  /** Wall clock for the whole response. */
  deadlineMs: number
  /** Per code block. */
  codeTimeoutMs: number
  /** Code blocks per organization per UTC day. */
  maxExecutionsPerDay: number
}

export interface RunDeps {
  model: ModelProvider
  sandbox: Sandbox
  meter: UsageMeter
  clock: Clock
  facts: ToolFacts
  /** Progress as it happens (the streaming API turns these into server-sent events). */
  onEvent?: (event: RunEvent) => void
  /** Called between steps with the response so far; true stops the run as `cancelled`. */
  checkpoint?: (response: ResponseObject) => Promise<boolean>
}

/** Events in the shape of OpenAI's Responses streaming, so clients written for it read them. */
export type RunEvent =
  | { type: 'response.created' | 'response.in_progress'; response: ResponseObject }
  | { type: 'response.output_item.added' | 'response.output_item.done'; output_index: number; item: CodeInterpreterCall | MessageItem | PendingCall }
  | { type: 'response.code_interpreter_call.completed'; output_index: number; item_id: string; item: CodeInterpreterCall }
  | { type: 'response.output_text.delta'; output_index: number; item_id: string; content_index: 0; delta: string }

/** A code call that has started: its code, no outputs yet. */
export interface PendingCall {
  type: 'code_interpreter_call'
  id: string
  status: 'in_progress'
  code: string
  outputs: []
}

export interface RunInput {
  /** Given when the id was handed out before the run (background runs). */
  responseId?: string
  organizationId: string
  sessionId: string
  /** Files, Python state and uploads of the session's blocks. */
  workspace: Workspace
  assistantId: string
  instructions: string
  model?: string
  mode: 'auto' | 'on' | 'off'
  tools: ToolSpec[]
  inputs: { role: 'user' | 'assistant'; content: string }[]
}

/**
 * The run loop: model turn -> code blocks through the sandbox -> outputs back to the model ->
 * ... until the model answers in text or a bound is hit. Blocks of one response share Python
 * state and files through the workspace. Never throws for a model or sandbox failure: the
 * response ends `failed` or `incomplete` with every call made so far.
 */
export async function runResponse(
  input: RunInput,
  deps: RunDeps,
  limits: RunLimits,
): Promise<{ response: ResponseObject }> {
  const started = deps.clock.now()
  const deadline = started.getTime() + limits.deadlineMs
  const model = input.model ?? deps.model.defaultModel
  const usage: ResponseUsage = { input_tokens: 0, output_tokens: 0, total_tokens: 0, code_blocks: 0, sandbox_ms: 0 }
  const output: (CodeInterpreterCall | MessageItem)[] = []
  const response: ResponseObject = {
    id: input.responseId ?? newId('resp'),
    object: 'response',
    status: 'completed',
    organization_id: input.organizationId,
    assistant_id: input.assistantId,
    model,
    created_at: Math.floor(started.getTime() / 1000),
    tools: input.tools,
    output,
    usage,
    session_id: input.sessionId,
  }
  const emit = (event: RunEvent) => {
    if (!deps.onEvent) return
    try {
      // A copy: the listener must not see later changes to the response being built.
      deps.onEvent(structuredClone(event))
    } catch {
      // A listener's failure (e.g. a closed stream) never stops the run.
    }
  }
  emit({ type: 'response.created', response: { ...response, status: 'in_progress' } })
  const end = (status: ResponseObject['status'], detail?: { reason?: string; error?: { code: string; message: string } }) => {
    response.status = status
    if (detail?.reason) response.incomplete_details = { reason: detail.reason }
    if (detail?.error) response.error = detail.error
    usage.total_tokens = usage.input_tokens + usage.output_tokens
    return { response }
  }

  const tools = input.mode === 'off' ? [] : [codeInterpreterTool(deps.facts)]
  const system = systemPrompt(input.instructions, input.mode, deps.facts, input.workspace.visibleFiles)
  const messages: ChatMessage[] = input.inputs.map((m) => ({ role: m.role, content: [{ type: 'text', text: m.content }] }))

  const cancelled = async () => {
    if (!deps.checkpoint) return false
    try {
      return await deps.checkpoint({ ...response, status: 'in_progress', output: [...output] })
    } catch {
      return false // progress is best effort; the final response is what must be stored
    }
  }
  for (;;) {
    const remaining = deadline - deps.clock.now().getTime()
    if (remaining <= 0) return end('incomplete', { reason: 'deadline' })
    if (await cancelled()) return end('cancelled')
    let turn
    try {
      turn = await deps.model.converse({
        model,
        system,
        messages,
        tools,
        // `on`: the first turn must call the tool; afterwards the model decides.
        toolChoice: input.mode === 'on' && usage.code_blocks === 0 ? 'required' : 'auto',
        signal: AbortSignal.timeout(remaining),
      })
    } catch (error) {
      if ((error as Error).name === 'TimeoutError' || deadline - deps.clock.now().getTime() <= 0) {
        return end('incomplete', { reason: 'deadline' })
      }
      const message = error instanceof ModelError ? error.message : `the model call failed: ${(error as Error).message}`
      return end('failed', { error: { code: 'model_error', message } })
    }
    usage.input_tokens += turn.usage.inputTokens
    usage.output_tokens += turn.usage.outputTokens
    const uses = tools.length ? turn.content.filter((b) => b.type === 'tool_use') : []
    const text = turn.content
      .filter((b): b is Extract<ContentBlock, { type: 'text' }> => b.type === 'text')
      .map((b) => b.text)
      .join('')
    if (uses.length === 0) {
      const item: MessageItem = { type: 'message', role: 'assistant', content: [{ type: 'output_text', text }] }
      const index = output.length
      emit({ type: 'response.output_item.added', output_index: index, item: { ...item, content: [{ type: 'output_text', text: '' }] } })
      // The providers answer in one piece today: the whole text is one delta.
      if (text) emit({ type: 'response.output_text.delta', output_index: index, item_id: `msg_${response.id.slice(5)}`, content_index: 0, delta: text })
      output.push(item)
      emit({ type: 'response.output_item.done', output_index: index, item })
      return end(turn.stopReason === 'max_tokens' ? 'incomplete' : 'completed', turn.stopReason === 'max_tokens' ? { reason: 'max_output_tokens' } : undefined)
    }
    messages.push({ role: 'assistant', content: turn.content })
    const results: ContentBlock[] = []
    for (const use of uses) {
      if (use.type !== 'tool_use') continue
      const code = use.input.code
      if (use.name !== CODE_TOOL_NAME || typeof code !== 'string' || code.trim() === '') {
        results.push({
          type: 'tool_result',
          toolUseId: use.id,
          status: 'error',
          content: [{ type: 'text', text: `Call ${CODE_TOOL_NAME} with {"code": "<python source>"}.` }],
        })
        continue
      }
      if (usage.code_blocks >= limits.maxCodeBlocks) return end('incomplete', { reason: 'max_code_blocks' })
      if (usage.code_blocks > 0 && (await cancelled())) return end('cancelled')
      const blockBudget = Math.min(limits.codeTimeoutMs, deadline - deps.clock.now().getTime())
      if (blockBudget < 100) return end('incomplete', { reason: 'deadline' })
      if (!(await deps.meter.tryConsumeExecution(input.organizationId, limits.maxExecutionsPerDay, deps.clock.now()))) {
        return end('incomplete', { reason: 'max_executions_per_day' })
      }
      const id = newId('ci')
      const index = output.length
      emit({ type: 'response.output_item.added', output_index: index, item: { type: 'code_interpreter_call', id, status: 'in_progress', code, outputs: [] } })
      let result: SandboxResult
      let outputs: PublicOutputItem[]
      try {
        result = await deps.sandbox.run(
          { version: 1, action: 'execute', request_id: id, code, limits: { timeout_ms: blockBudget }, ...(await input.workspace.payload(true)) },
          { organizationId: input.organizationId },
        )
        // Images and files become stored files; a timed-out block returns no state, so the
        // session keeps the one from before it.
        outputs = await input.workspace.settle(result, { response_id: response.id, call_id: id })
      } catch (error) {
        const apiError = error instanceof ApiError ? error : undefined
        return end('failed', {
          error: { code: apiError?.code ?? 'sandbox_error', message: apiError?.message ?? (error as Error).message },
        })
      }
      usage.code_blocks += 1
      usage.sandbox_ms += result.duration_ms
      const call: CodeInterpreterCall = { type: 'code_interpreter_call', id, status: result.status, code, outputs, duration_ms: result.duration_ms }
      output.push(call)
      emit({ type: 'response.code_interpreter_call.completed', output_index: index, item_id: id, item: call })
      emit({ type: 'response.output_item.done', output_index: index, item: call })
      results.push(toolResult(use.id, result))
    }
    messages.push({ role: 'user', content: results })
  }
}

/** What the model sees of a block: text, errors with traceback, images where it takes them. */
export function toolResult(toolUseId: string, result: SandboxResult): ContentBlock {
  const content: ToolResultContent[] = []
  let text = ''
  const add = (s: string) => {
    text += (text && !text.endsWith('\n') ? '\n' : '') + s
  }
  for (const item of result.outputs as OutputItem[]) {
    if (item.type === 'text') add(item.source === 'stderr' ? `[stderr] ${item.text}` : item.text)
    else if (item.type === 'error') add(item.traceback || `${item.name}: ${item.message}`)
    else if (item.type === 'file') add(`[file written: ${item.filename} (${item.bytes} bytes, ${item.mime_type})]`)
    else if (item.type === 'image' && item.data !== undefined) content.push({ type: 'image', format: 'png', data: Buffer.from(item.data, 'base64') })
    else if (item.type === 'image') add('[an image too large to show here was returned to the user]')
  }
  if (result.status === 'timed_out') add('[the block was stopped at the time limit]')
  if (text.length > MAX_TOOL_RESULT_CHARS) {
    text = text.slice(0, MAX_TOOL_RESULT_CHARS) + `\n[${text.length - MAX_TOOL_RESULT_CHARS} more characters not shown]`
  }
  content.unshift({ type: 'text', text: text || '[no output]' })
  return { type: 'tool_result', toolUseId, status: result.status === 'completed' ? 'success' : 'error', content }
}
