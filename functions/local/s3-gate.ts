import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SignatureV4 } from '@smithy/signature-v4'

/** Query parameters SigV4 query signing adds (the rest of the query is signed as given). */
const AUTH_PARAMS = ['X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Signature', 'X-Amz-Content-Sha256']
const METHODS = new Set(['GET', 'HEAD', 'PUT'])

/** node:crypto behind the SDK's Checksum interface (SHA-256, or HMAC-SHA256 with a secret). */
type Data = string | ArrayBuffer | ArrayBufferView
const bytes = (data: Data) =>
  typeof data === 'string' ? Buffer.from(data) : ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data)
class Sha256 {
  private readonly hash
  constructor(secret?: Data) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret))
  }
  update(data: Data): void {
    this.hash.update(bytes(data))
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest())
  }
  reset(): void {}
}

export interface Credentials {
  accessKeyId: string
  secretAccessKey: string
}

/**
 * Whether a request carries a valid, unexpired SigV4 presigned URL made with `credentials`:
 * the signature is derived again by the SDK's own signer (`@smithy/signature-v4`, as the
 * presigner made it) and compared in constant time. `host` is the Host header the client sent,
 * which the URL signed. Returns the reason when it is not.
 */
export async function checkPresigned(
  method: string,
  host: string,
  rawUrl: string,
  credentials: Credentials,
  region: string,
  now = Date.now(),
): Promise<string | null> {
  const url = new URL(rawUrl, `http://${host}`)
  const q = Object.fromEntries(url.searchParams)
  if (q['X-Amz-Algorithm'] !== 'AWS4-HMAC-SHA256' || !q['X-Amz-Signature'] || !q['X-Amz-Date'] || !q['X-Amz-Expires']) {
    return 'not a presigned URL'
  }
  if (q['X-Amz-Credential']?.split('/')[0] !== credentials.accessKeyId) return 'unknown access key'
  const d = q['X-Amz-Date']
  const signedAt = Date.parse(`${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}T${d.slice(9, 11)}:${d.slice(11, 13)}:${d.slice(13, 15)}Z`)
  const expires = Number(q['X-Amz-Expires'])
  if (!Number.isFinite(signedAt) || !Number.isInteger(expires) || now > signedAt + expires * 1000 || signedAt > now + 300_000) {
    return 'expired'
  }
  const signed = new Set((q['X-Amz-SignedHeaders'] ?? '').split(';'))
  if (signed.size !== 1 || !signed.has('host')) return 'signs headers other than host'
  const query: Record<string, string> = {}
  for (const [k, v] of Object.entries(q)) if (!AUTH_PARAMS.includes(k)) query[k] = v
  const headers: Record<string, string> = { host }
  if (q['X-Amz-Content-Sha256']) headers['X-Amz-Content-Sha256'] = q['X-Amz-Content-Sha256']
  const signer = new SignatureV4({ service: 's3', region, credentials, sha256: Sha256, uriEscapePath: false, applyChecksum: false })
  const again = await signer.presign(
    { method, protocol: 'http:', hostname: url.hostname, port: Number(url.port) || undefined, path: url.pathname, query, headers },
    { signingDate: new Date(signedAt), expiresIn: expires },
  )
  const want = Buffer.from(String(again.query?.['X-Amz-Signature'] ?? ''))
  const got = Buffer.from(q['X-Amz-Signature'])
  return want.length === got.length && timingSafeEqual(want, got) ? null : 'signature does not match'
}

/**
 * Whether the raw request target is exactly what a URL parser makes of it. The signature is
 * checked on the parsed path, and s3rver joins the raw one into a file path: a target that
 * parsing changes (`..`, `.`, `\`, `%2e`, `%5c`) could be signed as one object and stored as
 * another file, anywhere on the host (found by a review). Such a target is never presigned.
 */
export function isCanonical(target: string): boolean {
  if (!target.startsWith('/') || /\\|%5c|%2e/i.test(target)) return false
  const parsed = new URL(target, 'http://gate.invalid')
  return parsed.pathname + parsed.search === target || parsed.pathname + parsed.search === target.replace(/\?$/, '')
}

function deny(res: ServerResponse, reason: string): void {
  const body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>${reason}</Message></Error>`
  res.writeHead(403, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

/**
 * Local mode's stand-in for the S3 gateway endpoint as the sandbox meets it: only requests on
 * a valid presigned URL pass to s3rver, which checks no SigV4 signature itself and takes
 * unsigned requests as anonymous. The lambda posture's network namespace reaches S3 through
 * this gate only, so a block that opens a socket (no seccomp inside Lambda) can fetch or put
 * only the objects the API presigned for its request, as the real endpoint policy and signatures
 * allow: the presigned URL's exact, canonical path, no unsigned x-amz-* header. Listens on 127.0.0.1:0; forwards to 127.0.0.1:`targetPort` with the Host header kept.
 */
export function startS3Gate(targetPort: number, credentials: Credentials, region: string, log: (line: string) => void): Promise<Server> {
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const method = req.method ?? ''
    // SigV4: every x-amz-* header must be signed, and these URLs sign only host (an unsigned
    // x-amz-copy-source would turn a PUT URL into a read of another object).
    const unsigned = Object.keys(req.headers).find((h) => h.toLowerCase().startsWith('x-amz-'))
    const reason = !METHODS.has(method)
      ? `method ${method} is not allowed`
      : unsigned
        ? `header ${unsigned} is not signed`
        : !isCanonical(req.url ?? '')
          ? 'the path is not in canonical form (dot segments, backslashes or their escapes)'
          : await checkPresigned(method, req.headers.host ?? '', req.url ?? '/', credentials, region).catch((e: Error) => e.message)
    if (reason) {
      log(`[s3 gate] refused ${method} ${req.url?.split('?')[0]}: ${reason}`)
      req.resume()
      return deny(res, reason)
    }
    const upstream = request({ host: '127.0.0.1', port: targetPort, method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    upstream.on('error', () => res.destroy())
    req.pipe(upstream)
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server))
  })
}

export const gatePort = (server: Server) => (server.address() as AddressInfo).port
