import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { PoolFullError, type WorkerPool } from './worker-pool'

/** Lambda's synchronous invocation payload limit. */
const MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
const INVOKE_PATH = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const data = Buffer.from(JSON.stringify(body))
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(data.length), ...headers })
  res.end(data)
}

/** The function's answer byte for byte, as Lambda passes it on (lambda posture). */
function sendRaw(res: ServerResponse, data: Buffer, headers: Record<string, string>) {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(data.length), ...headers })
  res.end(data)
}

function awsError(res: ServerResponse, status: number, type: string, message: string) {
  send(res, status, { Type: 'User', message }, { 'x-amzn-errortype': type })
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        resolve(null)
        req.resume()
        return
      }
      chunks.push(chunk)
    })
    req.on('end', () => resolve(size > limit ? null : Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

/**
 * The Lambda Invoke API on loopback, backed by the worker pool, so the API uses the real
 * LambdaClient locally. It honours TenantId (X-Amz-Tenant-Id) like Lambda's tenant isolation.
 */
export function startLambdaEndpoint(pool: WorkerPool, functionName: string, port = 0): Promise<Server> {
  const server = createServer(async (req, res) => {
    const match = req.url?.split('?')[0]?.match(INVOKE_PATH)
    if (req.method !== 'POST' || !match) return awsError(res, 404, 'ResourceNotFoundException', 'Unknown operation')
    if (decodeURIComponent(match[1]!) !== functionName) {
      return awsError(res, 404, 'ResourceNotFoundException', `Function not found: ${match[1]}`)
    }
    const type = req.headers['x-amz-invocation-type'] ?? 'RequestResponse'
    if (type !== 'RequestResponse') {
      return awsError(res, 400, 'InvalidParameterValueException', `Invocation type ${type} is not supported locally`)
    }
    const body = await readBody(req, MAX_PAYLOAD_BYTES)
    if (body === null) return awsError(res, 413, 'RequestTooLargeException', 'Request must be smaller than 6291456 bytes')
    let payload: unknown
    try {
      payload = JSON.parse(body.toString('utf8'))
    } catch {
      return awsError(res, 400, 'InvalidRequestContentException', 'Could not parse request body into json')
    }
    const tenant = String(req.headers['x-amz-tenant-id'] ?? '')
    try {
      const reply = await pool.invoke(payload, tenant)
      const headers = { 'x-amz-executed-version': '$LATEST' }
      if (reply.error) send(res, 200, reply.error, { ...headers, 'x-amz-function-error': 'Unhandled' })
      else if (reply.payload) sendRaw(res, reply.payload, headers)
      else send(res, 200, reply.result, headers)
    } catch (error) {
      if (error instanceof PoolFullError) {
        return awsError(res, 429, 'TooManyRequestsException', 'Rate Exceeded. ' + error.message)
      }
      awsError(res, 500, 'ServiceException', (error as Error).message)
    }
  })
  server.keepAliveTimeout = 60_000
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve(server))
  })
}

export const endpointUrl = (server: Server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`
