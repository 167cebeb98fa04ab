/**
 * The model port: one request/response turn of a chat model that may call the code tool.
 * Adapters (functions/adapters/models/) translate it to Bedrock Converse, OpenAI-compatible
 * Chat Completions, or a scripted replay. The core imports nothing else about models.
 */

export type ToolResultContent =
  | { type: 'text'; text: string }
  /** PNG bytes; adapters that cannot send images to the model describe them in text. */
  | { type: 'image'; format: 'png'; data: Uint8Array }

export type ContentBlock =
  | { type: 'text'; text: string }
  | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> }
  | { type: 'tool_result'; toolUseId: string; status: 'success' | 'error'; content: ToolResultContent[] }

export interface ChatMessage {
  role: 'user' | 'assistant'
  content: ContentBlock[]
}

export interface ModelTool {
  name: string
  description: string
  /** JSON Schema of the tool's input object. */
  inputSchema: Record<string, unknown>
}

export interface ModelRequest {
  /** Provider-specific model id (Bedrock model or inference profile id, OpenAI model name). */
  model: string
  system: string
  messages: ChatMessage[]
  /** Empty when the code interpreter is off: then no tool is offered at all. */
  tools: ModelTool[]
  /** auto: the model may call a tool; required: it must call one (Bedrock "any"). */
  toolChoice: 'auto' | 'required'
  maxTokens?: number
  signal?: AbortSignal
}

export interface ModelUsage {
  inputTokens: number
  outputTokens: number
}

export interface ModelTurn {
  /** Text and tool_use blocks, in the order the model produced them. */
  content: ContentBlock[]
  stopReason: 'end_turn' | 'tool_use' | 'max_tokens' | 'other'
  usage: ModelUsage
}

export interface ModelProvider {
  /** bedrock | openai | scripted */
  readonly name: string
  /** The model used when neither the assistant nor the request names one. */
  readonly defaultModel: string
  converse(request: ModelRequest): Promise<ModelTurn>
}

/** A failure of the model call (after the adapter's own retries). */
export class ModelError extends Error {
  constructor(
    message: string,
    /** Throttling or a transient fault: retrying later may succeed. */
    readonly retryable: boolean,
  ) {
    super(message)
    this.name = 'ModelError'
  }
}

/** What to tell a caller when no provider is configured (the API's 503 model_not_configured). */
export const MODEL_NOT_CONFIGURED_HINT =
  'No model provider is configured. Set BEDROCK_MODEL_ID with AWS credentials and AWS_REGION, ' +
  'or OPENAI_BASE_URL and OPENAI_MODEL, or SCRIPTED_MODEL_FILE; MODEL_PROVIDER picks one explicitly.'
