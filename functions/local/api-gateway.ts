import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { Writable } from 'node:stream'
import type { APIGatewayProxyEvent, Context } from 'aws-lambda'

/** API Gateway's own payload limit for REST APIs. */
export const MAX_REQUEST_BYTES = 10 * 1024 * 1024

type StreamingHandler = (event: APIGatewayProxyEvent, responseStream: Writable, context: Context) => Promise<unknown>

interface Prelude {
  statusCode?: number
  headers?: Record<string, string>
}

/** Lambda's response stream, written to an HTTP response: the prelude becomes the status and headers. */
class HttpResponseStream extends Writable {
  private prelude: Prelude = {}

  constructor(private readonly res: ServerResponse) {
    super()
  }

  setPrelude(prelude: Prelude) {
    this.prelude = prelude
  }

  private head() {
    if (!this.res.headersSent) this.res.writeHead(this.prelude.statusCode ?? 200, this.prelude.headers ?? {})
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void) {
    this.head()
    if (chunk.length === 0) return callback()
    this.res.write(chunk, callback)
  }

  override _final(callback: (error?: Error | null) => void) {
    this.head()
    this.res.end(callback)
  }
}

/** The globals Lambda's Node runtime gives streaming handlers (middy's streaming mode uses them). */
export function installLambdaStreamingGlobals(): void {
  // The AWS SDK's invoke store creates an empty `awslambda` object of its own: add to it.
  const g = globalThis as { awslambda?: Record<string, unknown> }
  const lambda = (g.awslambda ??= {})
  lambda.streamifyResponse ??= <T>(fn: T) => fn
  lambda.HttpResponseStream ??= {
    from: (stream: HttpResponseStream, prelude: Prelude) => {
      stream.setPrelude(prelude)
      return stream
    },
  }
}

function toEvent(req: IncomingMessage, body: Buffer, requestId: string): APIGatewayProxyEvent {
  const url = new URL(req.url ?? '/', 'http://localhost')
  const headers: Record<string, string> = {}
  const multiValueHeaders: Record<string, string[]> = {}
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!
    const value = req.rawHeaders[i + 1]!
    headers[name] = value
    ;(multiValueHeaders[name] ??= []).push(value)
  }
  const query: Record<string, string> = {}
  const multiQuery: Record<string, string[]> = {}
  for (const [k, v] of url.searchParams) {
    query[k] = v
    ;(multiQuery[k] ??= []).push(v)
  }
  const text = body.toString('utf8')
  const binary = Buffer.compare(Buffer.from(text, 'utf8'), body) !== 0
  return {
    resource: url.pathname,
    path: url.pathname,
    httpMethod: req.method ?? 'GET',
    headers,
    multiValueHeaders,
    queryStringParameters: url.searchParams.size ? query : null,
    multiValueQueryStringParameters: url.searchParams.size ? multiQuery : null,
    pathParameters: null,
    stageVariables: null,
    body: body.length === 0 ? null : binary ? body.toString('base64') : text,
    isBase64Encoded: binary,
    requestContext: {
      requestId,
      stage: 'local',
      httpMethod: req.method ?? 'GET',
      path: url.pathname,
      requestTimeEpoch: Date.now(),
      identity: { sourceIp: req.socket.remoteAddress ?? '127.0.0.1' },
    } as APIGatewayProxyEvent['requestContext'],
  }
}

function context(requestId: string): Context {
  const deadline = Date.now() + 15 * 60_000
  return {
    awsRequestId: requestId,
    functionName: 'api',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:local:000000000000:function:api',
    memoryLimitInMB: '1024',
    logGroupName: 'local',
    logStreamName: 'local',
    callbackWaitsForEmptyEventLoop: false,
    getRemainingTimeInMillis: () => deadline - Date.now(),
    done: () => {},
    fail: () => {},
    succeed: () => {},
  }
}

function readBody(req: IncomingMessage): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size <= MAX_REQUEST_BYTES) chunks.push(chunk)
    })
    req.on('end', () => resolve(size > MAX_REQUEST_BYTES ? null : Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

/** Serves the API handler over HTTP on loopback the way API Gateway (STREAM mode) calls it. */
export function startApiServer(
  handler: StreamingHandler,
  port: number,
  log: (line: string) => void,
): Promise<Server> {
  installLambdaStreamingGlobals()
  const server = createServer(async (req, res) => {
    const started = performance.now()
    const requestId = randomUUID()
    res.on('finish', () => {
      // One line per request; never the code or its output.
      log(`${req.method} ${req.url?.split('?')[0]} ${res.statusCode} ${(performance.now() - started).toFixed(1)}ms ${requestId}`)
    })
    const body = await readBody(req)
    if (body === null) {
      res.writeHead(413, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: { code: 'request_too_large', message: `The request body exceeds ${MAX_REQUEST_BYTES} bytes.` } }))
      return
    }
    const stream = new HttpResponseStream(res)
    try {
      await handler(toEvent(req, body, requestId), stream, context(requestId))
    } catch (error) {
      log(`handler failed: ${(error as Error).stack}`)
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ error: { code: 'internal_error', message: `Internal error (request ${requestId}).` } }))
      } else res.end()
    }
  })
  server.keepAliveTimeout = 60_000
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve(server))
  })
}
