import http from 'node:http'
import type { AddressInfo } from 'node:net'

/** A local stand-in for an OpenAI-compatible Chat Completions endpoint (POST {base}/chat/completions). */

export interface RecordedChat {
  headers: http.IncomingHttpHeaders
  body: any
}

export interface ChatReply {
  status?: number
  body: unknown
  headers?: Record<string, string>
}

export type ChatResponder = (request: RecordedChat, index: number) => ChatReply

export interface OpenAIServer {
  /** The base URL to configure, ending in /v1. */
  baseUrl: string
  requests: RecordedChat[]
  enqueue(...replies: ChatReply[]): void
  close(): Promise<void>
}

export function chatBody(message: Record<string, unknown>, finishReason: string, usage = { prompt_tokens: 12, completion_tokens: 7 }) {
  return {
    id: 'chatcmpl-test',
    object: 'chat.completion',
    created: 0,
    model: 'test-model',
    choices: [{ index: 0, message: { role: 'assistant', ...message }, finish_reason: finishReason }],
    usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens },
  }
}

export const chatText = (text: string, finishReason = 'stop'): ChatReply => ({ body: chatBody({ content: text }, finishReason) })

export const chatToolCall = (id: string, name: string, args: string, text: string | null = null, finishReason = 'tool_calls'): ChatReply => ({
  body: chatBody({ content: text, tool_calls: [{ id, type: 'function', function: { name, arguments: args } }] }, finishReason),
})

export const chatError = (status: number, message: string, headers?: Record<string, string>): ChatReply => ({
  status,
  headers,
  body: { error: { message, type: 'test_error' } },
})

const notScripted: ChatResponder = () => chatError(500, 'openai-server: no reply scripted')

export async function startOpenAIServer(responder: ChatResponder = notScripted): Promise<OpenAIServer> {
  const requests: RecordedChat[] = []
  const queue: ChatReply[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      let reply: ChatReply
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
        reply = chatError(404, `openai-server: no route for ${req.method} ${req.url}`)
      } else {
        const recorded = { headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') }
        requests.push(recorded)
        reply = queue.shift() ?? responder(recorded, requests.length - 1)
      }
      res.writeHead(reply.status ?? 200, { 'content-type': 'application/json', ...reply.headers })
      res.end(typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    enqueue: (...replies) => queue.push(...replies),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
