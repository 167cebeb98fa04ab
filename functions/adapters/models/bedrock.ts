import {
  BedrockRuntimeClient,
  type ContentBlock as BedrockBlock,
  ConverseCommand,
  type ConverseCommandOutput,
  type Message,
  type ToolResultContentBlock,
} from '@aws-sdk/client-bedrock-runtime'
import type { ChatMessage, ContentBlock, ModelProvider, ModelRequest, ModelTurn, ToolResultContent } from '../../core/model'
import { type Failure, isNetworkError, type RetryPolicy, retryPolicy, withRetry } from './retry'

export interface BedrockModelOptions {
  /**
   * A configured client. Give it `maxAttempts: 1`: this adapter owns retries, and the SDK's own
   * (3 by default) would multiply with them. @default a client with maxAttempts 1 and the SDK's
   * default region, credentials and endpoint (AWS_ENDPOINT_URL_BEDROCK_RUNTIME)
   */
  client?: BedrockRuntimeClient
  /** Model or inference profile id used when the request names none. */
  defaultModel: string
  /** @default 4 */
  maxAttempts?: number
  /** @default 500 */
  baseDelayMs?: number
  /** @default 8000 */
  maxDelayMs?: number
}

/** Error names that mean "try again": throttling, or a fault on AWS's side. See notes/aws.md §4. */
const RETRYABLE = new Set([
  'ThrottlingException',
  'ServiceUnavailableException',
  'InternalServerException',
  'ModelNotReadyException',
])

const HINTS: Record<string, string> = {
  AccessDeniedException: 'check the bedrock:InvokeModel permission and that access to this model is enabled in the account',
  ResourceNotFoundException: 'check the model id (BEDROCK_MODEL_ID or the assistant\'s model) and the region',
  ValidationException: 'the request was rejected as invalid',
}

/** The model port over the Bedrock Converse API. */
export class BedrockModel implements ModelProvider {
  readonly name = 'bedrock'
  readonly defaultModel: string
  private readonly client: BedrockRuntimeClient
  private readonly policy: RetryPolicy

  constructor(options: BedrockModelOptions) {
    this.defaultModel = options.defaultModel
    this.client = options.client ?? new BedrockRuntimeClient({ maxAttempts: 1 })
    this.policy = retryPolicy(options)
  }

  async converse(request: ModelRequest): Promise<ModelTurn> {
    const modelId = request.model || this.defaultModel
    const input = toConverseInput(modelId, request)
    const output = await withRetry(
      this.policy,
      request.signal,
      () => this.client.send(new ConverseCommand(input), { abortSignal: request.signal }),
      (error) => classify(modelId, error),
    )
    return fromConverseOutput(output)
  }
}

export function toConverseInput(modelId: string, request: ModelRequest) {
  return {
    modelId,
    system: request.system ? [{ text: request.system }] : undefined,
    messages: request.messages.map(toMessage),
    // Converse rejects an empty tools list; with the interpreter off no toolConfig is sent at all.
    toolConfig: request.tools.length
      ? {
          tools: request.tools.map((t) => ({
            toolSpec: { name: t.name, description: t.description, inputSchema: { json: t.inputSchema as any } },
          })),
          toolChoice: request.toolChoice === 'required' ? { any: {} } : { auto: {} },
        }
      : undefined,
    inferenceConfig: request.maxTokens ? { maxTokens: request.maxTokens } : undefined,
  }
}

function toMessage(message: ChatMessage): Message {
  return { role: message.role, content: message.content.flatMap(toBlock) }
}

function toBlock(block: ContentBlock): BedrockBlock[] {
  switch (block.type) {
    case 'text':
      // Converse answers ValidationException "text field ... is blank" for empty text blocks.
      return block.text.trim() ? [{ text: block.text }] : []
    case 'tool_use':
      return [{ toolUse: { toolUseId: block.id, name: block.name, input: block.input as any } }]
    case 'tool_result':
      return [
        {
          toolResult: {
            toolUseId: block.toolUseId,
            status: block.status,
            // An empty content list is rejected too; say so in words.
            content: block.content.length ? block.content.map(toResultContent) : [{ text: '(no output)' }],
          },
        },
      ]
  }
}

function toResultContent(part: ToolResultContent): ToolResultContentBlock {
  return part.type === 'text' ? { text: part.text } : { image: { format: 'png', source: { bytes: part.data } } }
}

export function fromConverseOutput(output: ConverseCommandOutput): ModelTurn {
  const content: ContentBlock[] = []
  for (const block of output.output?.message?.content ?? []) {
    if (block.text !== undefined && block.text !== '') content.push({ type: 'text', text: block.text })
    else if (block.toolUse) {
      const input = block.toolUse.input
      content.push({
        type: 'tool_use',
        id: block.toolUse.toolUseId ?? '',
        name: block.toolUse.name ?? '',
        input: input && typeof input === 'object' && !Array.isArray(input) ? (input as Record<string, unknown>) : {},
      })
    }
    // reasoningContent, citations and the like are not part of the port.
  }
  return {
    content,
    stopReason: stopReason(output.stopReason),
    usage: { inputTokens: output.usage?.inputTokens ?? 0, outputTokens: output.usage?.outputTokens ?? 0 },
  }
}

function stopReason(reason: string | undefined): ModelTurn['stopReason'] {
  switch (reason) {
    case 'end_turn':
    case 'stop_sequence':
      return 'end_turn'
    case 'tool_use':
      return 'tool_use'
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'max_tokens'
    default:
      return 'other'
  }
}

function classify(modelId: string, error: unknown): Failure {
  const e = error as { name?: string; message?: string; $metadata?: { httpStatusCode?: number }; $retryable?: unknown }
  const name = e?.name ?? 'Error'
  const status = e?.$metadata?.httpStatusCode
  const retryable =
    RETRYABLE.has(name) ||
    Boolean(e?.$retryable) ||
    (status !== undefined && (status >= 500 || status === 429)) ||
    (status === undefined && isNetworkError(error))
  const code = (error as { code?: string })?.code
  // The client's default handler is HTTP/2 only; an HTTP/1.1 endpoint fails with this code.
  const hint = HINTS[name] ?? (code === 'ERR_HTTP2_ERROR' ? 'the endpoint does not speak HTTP/2, which this client uses (check AWS_ENDPOINT_URL_BEDROCK_RUNTIME)' : undefined)
  return {
    retryable,
    message: `Bedrock model "${modelId}" failed: ${name}${status ? ` (HTTP ${status})` : ''}: ${e?.message ?? String(error)}${hint ? ` — ${hint}` : ''}`,
  }
}
