import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'

/**
 * A local stand-in for the Bedrock runtime's Converse operation, for tests through the real
 * BedrockRuntimeClient. It speaks cleartext HTTP/2 with prior knowledge (h2c), because that is
 * what the client's default NodeHttp2Handler opens for an http:// endpoint.
 */

export interface RecordedConverse {
  modelId: string
  headers: http2.IncomingHttpHeaders
  /** The parsed JSON body, as the SDK serialised it (blobs are base64 strings). */
  body: any
}

export interface ConverseReply {
  status?: number
  body: unknown
  /** Sent as x-amzn-errortype; the SDK maps it to the exception class. */
  errorType?: string
}

export type ConverseResponder = (request: RecordedConverse, index: number) => ConverseReply

export interface ConverseServer {
  url: string
  requests: RecordedConverse[]
  /** Replies used in order, before falling back to the responder. */
  enqueue(...replies: ConverseReply[]): void
  close(): Promise<void>
}

export const converseText = (text: string, usage = { inputTokens: 10, outputTokens: 5 }): ConverseReply => ({
  body: converseBody([{ text }], 'end_turn', usage),
})

export const converseToolUse = (
  toolUseId: string,
  name: string,
  input: Record<string, unknown>,
  text?: string,
): ConverseReply => ({
  body: converseBody([...(text ? [{ text }] : []), { toolUse: { toolUseId, name, input } }], 'tool_use'),
})

export const converseError = (status: number, errorType: string, message: string): ConverseReply => ({
  status,
  errorType,
  body: { message },
})

export function converseBody(content: unknown[], stopReason: string, usage = { inputTokens: 10, outputTokens: 5 }) {
  return {
    output: { message: { role: 'assistant', content } },
    stopReason,
    usage: { ...usage, totalTokens: usage.inputTokens + usage.outputTokens },
    metrics: { latencyMs: 1 },
  }
}

const notScripted: ConverseResponder = () => converseError(500, 'InternalServerException', 'converse-server: no reply scripted')

export async function startConverseServer(responder: ConverseResponder = notScripted): Promise<ConverseServer> {
  const requests: RecordedConverse[] = []
  const queue: ConverseReply[] = []
  const sessions = new Set<http2.ServerHttp2Session>()
  const server = http2.createServer()
  server.on('session', (session) => {
    sessions.add(session)
    session.on('close', () => sessions.delete(session))
  })
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = []
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.on('end', () => {
      const path = String(headers[':path'] ?? '')
      const match = /^\/model\/([^/]+)\/converse$/.exec(path.split('?')[0])
      let reply: ConverseReply
      if (headers[':method'] !== 'POST' || !match) {
        reply = converseError(404, 'UnknownOperationException', `converse-server: no route for ${headers[':method']} ${path}`)
      } else {
        const recorded: RecordedConverse = {
          modelId: decodeURIComponent(match[1]),
          headers,
          body: JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'),
        }
        requests.push(recorded)
        reply = queue.shift() ?? responder(recorded, requests.length - 1)
      }
      const payload = JSON.stringify(reply.body)
      stream.respond({
        ':status': reply.status ?? 200,
        'content-type': 'application/json',
        'x-amzn-requestid': `req-${requests.length}`,
        ...(reply.errorType ? { 'x-amzn-errortype': `${reply.errorType}:http://internal.amazon.com/coral/com.amazon.bedrock/` } : {}),
      })
      stream.end(payload)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    enqueue: (...replies) => queue.push(...replies),
    close: () =>
      new Promise<void>((resolve) => {
        for (const session of sessions) session.destroy()
        server.close(() => resolve())
      }),
  }
}
