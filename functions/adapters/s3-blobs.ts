import {
  CopyObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import type { Readable } from 'node:stream'
import { contentDisposition } from '../core/files'
import type { BlobStore, CopyOptions, PresignedUrl, PresignOptions } from '../core/ports'

/** A missing object: 404, or 403 when the role may not list the bucket (it may not). */
const isMissing = (error: unknown) => {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } }
  return e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404 || e.$metadata?.httpStatusCode === 403
}

/** A condition of a copy did not hold: 412, or 409 ConditionalRequestConflict (a concurrent write). */
const isRefused = (error: unknown) => {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } }
  return e.name === 'PreconditionFailed' || e.$metadata?.httpStatusCode === 412 || e.$metadata?.httpStatusCode === 409
}

/** SigV4 presigned URLs live at most seven days (S3 refuses a longer X-Amz-Expires). */
export const MAX_PRESIGNED_SECONDS = 7 * 86_400

/**
 * The bucket behind files and large session state. Presigning costs about half a millisecond,
 * so a URL is handed out again while the caller's minimum of its life remains and no more than
 * the caller asked for (same object, same method, same download headers).
 */
export class S3BlobStore implements BlobStore {
  private readonly signed = new Map<string, PresignedUrl>()

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
  ) {}

  async put(key: string, body: Uint8Array, contentType?: string): Promise<void> {
    await this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: contentType }))
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    try {
      const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }))
      return await out.Body!.transformToByteArray()
    } catch (error) {
      if (isMissing(error)) return undefined
      throw error
    }
  }

  async stream(key: string): Promise<{ body: NodeJS.ReadableStream; bytes: number } | undefined> {
    try {
      const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }))
      return { body: out.Body as Readable, bytes: out.ContentLength ?? 0 }
    } catch (error) {
      if (isMissing(error)) return undefined
      throw error
    }
  }

  async head(key: string): Promise<{ bytes: number; etag?: string } | undefined> {
    try {
      const out = await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }))
      return { bytes: out.ContentLength ?? 0, ...(out.ETag ? { etag: out.ETag } : {}) }
    } catch (error) {
      if (isMissing(error)) return undefined
      throw error
    }
  }

  /**
   * CopyObject inside the bucket (up to 5 GB, FILE_MAX_BYTES's ceiling), replacing the metadata:
   * only `contentType` is kept, nothing a client sent with its PUT (Content-Encoding,
   * Content-Disposition, x-amz-meta-*). `ifMatch` is x-amz-copy-source-if-match, `ifAbsent` is
   * If-None-Match: * on the destination (S3 refuses both with 412, a concurrent write with 409).
   */
  async copy(from: string, to: string, options: CopyOptions = {}): Promise<'copied' | 'missing' | 'refused'> {
    try {
      await this.s3.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: to,
          CopySource: `${this.bucket}/${from.split('/').map(encodeURIComponent).join('/')}`,
          MetadataDirective: 'REPLACE',
          ContentType: options.contentType ?? 'application/octet-stream',
          ...(options.ifMatch ? { CopySourceIfMatch: options.ifMatch } : {}),
          ...(options.ifAbsent ? { IfNoneMatch: '*' } : {}),
        }),
      )
      return 'copied'
    } catch (error) {
      if (isRefused(error)) return 'refused'
      if (isMissing(error)) return 'missing'
      throw error
    }
  }

  async delete(keys: string[]): Promise<void> {
    const gone = new Set(keys)
    for (const id of this.signed.keys()) if (gone.has(id.slice(0, id.indexOf('\n')))) this.signed.delete(id)
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000)
      await this.s3.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }))
    }
  }

  /**
   * A URL signed now (or reused, see above) that carries its own end: `seconds`, at most seven
   * days, and never past the signing credentials' expiry when the SDK knows it (STS, SSO, the
   * container or instance role, AWS_CREDENTIAL_EXPIRATION): S3 refuses a URL whose temporary
   * credentials have expired whatever X-Amz-Expires says (docs.aws.amazon.com/AmazonS3/latest/
   * userguide/using-presigned-url.html#PresignedUrl-Expiration), so the URL says so itself and
   * `expiresAt` is true. Lambda's own role credentials come without an expiry the SDK can read:
   * there only a short `seconds` keeps the promise (PRESIGNED_URL_SECONDS, 15 minutes by default).
   *
   * A PUT with `contentLength` signs the Content-Length header (X-Amz-SignedHeaders
   * `content-length;host`): S3 answers 403 SignatureDoesNotMatch to a body of any other length,
   * so the URL cannot store more than was declared. Every PUT to S3 carries a Content-Length
   * anyway (S3 takes no chunked body), so an honest client changes nothing. s3rver checks no
   * SigV4 signature, and the sandbox's S3 gate admits host-only URLs: never sign this for the runner.
   */
  async presign(method: 'GET' | 'PUT', key: string, seconds: number, options: PresignOptions = {}): Promise<PresignedUrl> {
    const { download } = options
    const contentLength = method === 'PUT' ? options.contentLength : undefined
    const id = `${key}\n${method}\n${download ? JSON.stringify(download) : ''}\n${contentLength ?? ''}`
    const now = Date.now()
    const cached = this.signed.get(id)
    const left = cached ? cached.expiresAt - now / 1000 : 0
    if (cached && left >= (options.minSeconds ?? (seconds * 2) / 3) && left <= seconds) return cached
    const command =
      method === 'GET'
        ? new GetObjectCommand({
            Bucket: this.bucket,
            Key: key,
            ...(download
              ? { ResponseContentType: download.contentType, ResponseContentDisposition: contentDisposition(download.filename) }
              : {}),
          })
        : new PutObjectCommand({ Bucket: this.bucket, Key: key, ...(contentLength !== undefined ? { ContentLength: contentLength } : {}) })
    let lifetime = Math.min(Math.floor(seconds), MAX_PRESIGNED_SECONDS)
    // The same memoized provider the presigner signs with (refreshed before it expires).
    const { expiration } = await this.s3.config.credentials()
    if (expiration) lifetime = Math.min(lifetime, Math.floor((expiration.getTime() - now) / 1000))
    if (lifetime < 1) throw new Error('The credentials that sign presigned URLs have expired.')
    // Signed at `now` (SigV4 keeps whole seconds): the URL ends at exactly what is reported.
    const url = await getSignedUrl(this.s3, command, { expiresIn: lifetime, signingDate: new Date(now) })
    const signed = { url, expiresAt: Math.floor(now / 1000) + lifetime }
    if (this.signed.size > 10_000) this.signed.clear()
    this.signed.set(id, signed)
    return signed
  }
}
