import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import type { Readable } from 'node:stream'
import { contentDisposition } from '../core/files'
import type { BlobStore } from '../core/ports'

/** A missing object: 404, or 403 when the role may not list the bucket (it may not). */
const isMissing = (error: unknown) => {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } }
  return e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404 || e.$metadata?.httpStatusCode === 403
}

/**
 * The bucket behind files and large session state. Presigning costs about half a millisecond,
 * so a URL is reused while it has most of its life left (same object, same method).
 */
export class S3BlobStore implements BlobStore {
  private readonly signed = new Map<string, { url: string; until: number }>()

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

  async head(key: string): Promise<{ bytes: number } | undefined> {
    try {
      const out = await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }))
      return { bytes: out.ContentLength ?? 0 }
    } catch (error) {
      if (isMissing(error)) return undefined
      throw error
    }
  }

  async delete(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000)
      for (const key of batch) this.signed.delete(`GET ${key}`)
      await this.s3.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }))
    }
  }

  async presign(method: 'GET' | 'PUT', key: string, expiresInSeconds: number, download?: { contentType: string; filename: string }): Promise<string> {
    const id = `${method} ${key} ${download ? JSON.stringify(download) : ''}`
    const now = Date.now()
    const cached = this.signed.get(id)
    // Reused only while at least two thirds of the asked-for life remain.
    if (cached && cached.until - now > (expiresInSeconds * 1000 * 2) / 3) return cached.url
    const command =
      method === 'GET'
        ? new GetObjectCommand({
            Bucket: this.bucket,
            Key: key,
            ...(download
              ? { ResponseContentType: download.contentType, ResponseContentDisposition: contentDisposition(download.filename) }
              : {}),
          })
        : new PutObjectCommand({ Bucket: this.bucket, Key: key })
    const url = await getSignedUrl(this.s3, command, { expiresIn: expiresInSeconds })
    if (this.signed.size > 10_000) this.signed.clear()
    this.signed.set(id, { url, until: now + expiresInSeconds * 1000 })
    return url
  }
}
