import {
  type ChatMessage,
  type ContentBlock,
  ModelError,
  type ModelProvider,
  type ModelRequest,
  type ModelTool,
  type ModelTurn,
} from '../../core/model'
import { type Failure, isNetworkError, type RetryPolicy, retryPolicy, withRetry } from './retry'

export interface OpenAICompatibleModelOptions {
  /** Up to and including the version segment, e.g. https://api.openai.com/v1 or http://localhost:11434/v1. */
  baseUrl: string
  /** Sent as a Bearer token when set (local servers usually need none). */
  apiKey?: string
  defaultModel: string
  /**
   * Whether the model takes image_url parts. Tool messages cannot carry images, so when true
   * they follow as a user message; when false they are described in text. @default false
   */
  supportsImages?: boolean
  /** @default globalThis.fetch */
  fetch?: typeof fetch
  /** @default 4 */
  maxAttempts?: number
  /** @default 500 */
  baseDelayMs?: number
  /** @default 8000 */
  maxDelayMs?: number
}

type WireMessage =
  | { role: 'system' | 'user'; content: string | WirePart[] }
  | { role: 'assistant'; content: string | null; tool_calls?: WireToolCall[] }
  | { role: 'tool'; tool_call_id: string; content: string }
type WirePart = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } }
type WireToolCall = { id?: string; type?: 'function'; function: { name: string; arguments: string } }

interface WireResponse {
  choices?: { message?: { content?: string | null; tool_calls?: WireToolCall[] }; finish_reason?: string | null }[]
  usage?: { prompt_tokens?: number; completion_tokens?: number }
}

class HttpFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message)
  }
}

/** The model port over an OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM, Ollama, llama.cpp). */
export class OpenAICompatibleModel implements ModelProvider {
  readonly name = 'openai'
  readonly defaultModel: string
  private readonly url: string
  private readonly policy: RetryPolicy
  private readonly fetch: typeof fetch

  constructor(private readonly options: OpenAICompatibleModelOptions) {
    this.defaultModel = options.defaultModel
    this.url = `${options.baseUrl.replace(/\/+$/, '')}/chat/completions`
    this.policy = retryPolicy(options)
    this.fetch = options.fetch ?? globalThis.fetch
  }

  async converse(request: ModelRequest): Promise<ModelTurn> {
    const model = request.model || this.defaultModel
    const body = JSON.stringify(toChatRequest(model, request, this.options.supportsImages ?? false))
    const answer = await withRetry(this.policy, request.signal, () => this.post(body, request.signal), (error) =>
      classify(model, this.options.baseUrl, error),
    )
    return fromChatResponse(model, answer, request.tools)
  }

  private async post(body: string, signal?: AbortSignal): Promise<WireResponse> {
    const res = await this.fetch(this.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(this.options.apiKey ? { authorization: `Bearer ${this.options.apiKey}` } : {}),
      },
      body,
      signal,
    })
    const text = await res.text()
    if (!res.ok) {
      const retryAfter = Number(res.headers.get('retry-after'))
      throw new HttpFailure(res.status, errorMessage(text), Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined)
    }
    try {
      return JSON.parse(text) as WireResponse
    } catch {
      throw new HttpFailure(res.status, `the answer is not JSON: ${text.slice(0, 200)}`)
    }
  }
}

export function toChatRequest(model: string, request: ModelRequest, supportsImages: boolean) {
  const messages: WireMessage[] = request.system ? [{ role: 'system', content: request.system }] : []
  for (const message of request.messages) messages.push(...toWire(message, supportsImages))
  return {
    model,
    messages,
    ...(request.tools.length
      ? {
          tools: request.tools.map((t) => ({
            type: 'function',
            function: { name: t.name, description: t.description, parameters: t.inputSchema },
          })),
          tool_choice: request.toolChoice,
        }
      : {}),
    ...(request.maxTokens ? { max_tokens: request.maxTokens } : {}),
  }
}

function toWire(message: ChatMessage, supportsImages: boolean): WireMessage[] {
  const text = message.content
    .flatMap((b) => (b.type === 'text' ? [b.text] : []))
    .join('\n')
  if (message.role === 'assistant') {
    const calls = message.content.flatMap((b): WireToolCall[] =>
      b.type === 'tool_use' ? [{ id: b.id, type: 'function', function: { name: b.name, arguments: JSON.stringify(b.input) } }] : [],
    )
    return [{ role: 'assistant', content: text || null, ...(calls.length ? { tool_calls: calls } : {}) }]
  }
  // Tool messages must directly follow the assistant's tool_calls, so they come first.
  const out: WireMessage[] = []
  const images: WirePart[] = []
  for (const block of message.content) {
    if (block.type !== 'tool_result') continue
    const parts = block.content.map((c) => {
      if (c.type === 'text') return c.text
      if (supportsImages) images.push({ type: 'image_url', image_url: { url: `data:image/png;base64,${Buffer.from(c.data).toString('base64')}` } })
      return `[image returned: ${c.data.byteLength} bytes PNG]`
    })
    // Chat Completions has no error flag on tool results; keep the status in the text.
    const status = block.status === 'error' ? '[status: error]\n' : ''
    out.push({ role: 'tool', tool_call_id: block.toolUseId, content: status + (parts.join('\n') || '(no output)') })
  }
  if (images.length) out.push({ role: 'user', content: [{ type: 'text', text: 'Images returned by the tool:' }, ...images] })
  if (text) out.push({ role: 'user', content: text })
  return out
}

export function fromChatResponse(model: string, answer: WireResponse, tools: ModelTool[]): ModelTurn {
  const choice = answer.choices?.[0]
  if (!choice?.message) throw new ModelError(`OpenAI-compatible model "${model}" returned no choices`, false)
  const content: ContentBlock[] = []
  if (choice.message.content) content.push({ type: 'text', text: choice.message.content })
  const calls = choice.message.tool_calls ?? []
  calls.forEach((call, i) => {
    content.push({
      type: 'tool_use',
      id: call.id || `call_${i}`,
      name: call.function.name,
      input: parseArguments(model, call.function.name, call.function.arguments, tools),
    })
  })
  return {
    content,
    // Some servers (Ollama) report "stop" even when the message carries tool calls.
    stopReason: calls.length ? 'tool_use' : finishReason(choice.finish_reason),
    usage: { inputTokens: answer.usage?.prompt_tokens ?? 0, outputTokens: answer.usage?.completion_tokens ?? 0 },
  }
}

function finishReason(reason: string | null | undefined): ModelTurn['stopReason'] {
  if (reason === 'stop') return 'end_turn'
  if (reason === 'tool_calls') return 'tool_use'
  if (reason === 'length') return 'max_tokens'
  return 'other'
}

/**
 * Arguments arrive as a JSON string. Smaller open models sometimes put the raw code there
 * instead; accept that only for a tool that takes `code` and text that is not broken JSON.
 */
function parseArguments(model: string, name: string, raw: string | undefined, tools: ModelTool[]): Record<string, unknown> {
  const source = raw ?? ''
  if (!source.trim()) return {}
  const takesCode = Boolean((tools.find((t) => t.name === name)?.inputSchema as any)?.properties?.code)
  let parsed: unknown
  try {
    parsed = JSON.parse(source)
  } catch {
    if (takesCode && !/^\s*[[{]/.test(source)) return { code: source }
    throw new ModelError(`OpenAI-compatible model "${model}" sent arguments for tool "${name}" that are not valid JSON: ${source.slice(0, 200)}`, false)
  }
  if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>
  if (typeof parsed === 'string' && takesCode) return { code: parsed }
  throw new ModelError(`OpenAI-compatible model "${model}" sent arguments for tool "${name}" that are not a JSON object`, false)
}

function errorMessage(text: string): string {
  try {
    const body = JSON.parse(text)
    const message = body?.error?.message ?? body?.error ?? body?.message
    if (typeof message === 'string') return message
  } catch {
    /* not JSON */
  }
  return text.slice(0, 300) || '(empty body)'
}

function classify(model: string, baseUrl: string, error: unknown): Failure {
  const prefix = `OpenAI-compatible model "${model}" at ${baseUrl} failed`
  if (error instanceof HttpFailure) {
    const hint = error.status === 401 || error.status === 403 ? ' — check OPENAI_API_KEY' : error.status === 404 ? ' — check OPENAI_BASE_URL and the model name' : ''
    return {
      retryable: error.status === 429 || error.status >= 500,
      message: `${prefix}: HTTP ${error.status}: ${error.message}${hint}`,
      retryAfterMs: error.retryAfterMs,
    }
  }
  const cause = (error as { cause?: { message?: string } })?.cause?.message
  return {
    retryable: isNetworkError(error),
    message: `${prefix}: ${(error as Error)?.message ?? String(error)}${cause ? ` (${cause})` : ''}`,
  }
}
