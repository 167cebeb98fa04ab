import { S3Client } from '@aws-sdk/client-s3'
import { SignatureV4 } from '@smithy/signature-v4'
import { createHash, createHmac } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { S3BlobStore } from '../../functions/adapters/s3-blobs'
import { LOCAL_BUCKET, S3RVER_CREDENTIALS, startLocalS3 } from '../../functions/local/s3'

// What presigned uploads need of the S3 adapter, against s3rver: a PUT URL that carries the one
// length S3 will take, HeadObject's ETag, and CopyObject from the staging key to the file's key
// that keeps none of what the client sent with its PUT.
let s3: Awaited<ReturnType<typeof startLocalS3>>
let blobs: S3BlobStore

const client = () =>
  new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    credentials: S3RVER_CREDENTIALS,
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })

type Data = string | ArrayBuffer | ArrayBufferView
const bytes = (d: Data) => (typeof d === 'string' ? Buffer.from(d) : ArrayBuffer.isView(d) ? Buffer.from(d.buffer, d.byteOffset, d.byteLength) : Buffer.from(d))
class Sha256 {
  private readonly hash
  constructor(secret?: Data) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret))
  }
  update(d: Data) {
    this.hash.update(bytes(d))
  }
  async digest() {
    return new Uint8Array(this.hash.digest())
  }
  reset() {}
}

/**
 * The signature S3 derives for a PUT to `url` that sends `contentLength` (SigV4 over the headers
 * the URL names, with the values the request carries), as the SDK's own signer computes it.
 */
async function signatureFor(url: string, contentLength: number): Promise<string> {
  const u = new URL(url)
  const q = Object.fromEntries(u.searchParams)
  const d = q['X-Amz-Date']!
  const signedAt = new Date(`${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}T${d.slice(9, 11)}:${d.slice(11, 13)}:${d.slice(13, 15)}Z`)
  const auth = ['X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Signature', 'X-Amz-Content-Sha256']
  const query = Object.fromEntries(Object.entries(q).filter(([k]) => !auth.includes(k)))
  const signer = new SignatureV4({ service: 's3', region: 'us-east-1', credentials: S3RVER_CREDENTIALS, sha256: Sha256, uriEscapePath: false, applyChecksum: false })
  const again = await signer.presign(
    {
      method: 'PUT',
      protocol: u.protocol,
      hostname: u.hostname,
      port: Number(u.port) || undefined,
      path: u.pathname,
      query,
      headers: { host: u.host, 'content-length': String(contentLength), 'X-Amz-Content-Sha256': q['X-Amz-Content-Sha256']! },
    },
    { signingDate: signedAt, expiresIn: Number(q['X-Amz-Expires']) },
  )
  return String(again.query?.['X-Amz-Signature'])
}

beforeAll(async () => {
  s3 = await startLocalS3(undefined)
  blobs = new S3BlobStore(client(), LOCAL_BUCKET)
})
afterAll(async () => {
  await s3?.stop()
})

describe('S3BlobStore.presign a PUT with contentLength', () => {
  it('signs Content-Length, so S3 computes another signature (403 SignatureDoesNotMatch) for any other length', async () => {
    const signed = await blobs.presign('PUT', 'uploads/org_a/file_len', 900, { contentLength: 8 })
    const q = new URL(signed.url).searchParams
    expect(q.get('X-Amz-SignedHeaders')).toBe('content-length;host')
    expect(await signatureFor(signed.url, 8)).toBe(q.get('X-Amz-Signature'))
    expect(await signatureFor(signed.url, 9)).not.toBe(q.get('X-Amz-Signature'))
    expect(await signatureFor(signed.url, 5 * 1024 * 1024)).not.toBe(q.get('X-Amz-Signature'))
    // s3rver checks no SigV4 signature: the declared length still works there, as on S3.
    expect((await fetch(signed.url, { method: 'PUT', body: 'a,b\n1,2\n' })).status).toBe(200)
  })

  it('is not handed out again for another length, and a URL without one signs host only (the runner\'s)', async () => {
    const a = await blobs.presign('PUT', 'uploads/org_a/file_same', 900, { contentLength: 8 })
    const b = await blobs.presign('PUT', 'uploads/org_a/file_same', 900, { contentLength: 9 })
    expect(b.url).not.toBe(a.url)
    const plain = await blobs.presign('PUT', 'files/org_a/slot', 900)
    expect(new URL(plain.url).searchParams.get('X-Amz-SignedHeaders')).toBe('host')
  })
})

describe('S3BlobStore.copy', () => {
  it('copies within the bucket with the given type and none of the metadata the client PUT', async () => {
    const put = await blobs.presign('PUT', 'uploads/org_a/file_meta', 900)
    const sent = await fetch(put.url, {
      method: 'PUT',
      body: 'a,b\n1,2\n',
      headers: { 'content-type': 'text/html', 'content-disposition': 'inline', 'content-encoding': 'gzip', 'x-amz-meta-owner': 'client' },
    })
    expect(sent.status).toBe(200)
    const head = await blobs.head('uploads/org_a/file_meta')
    expect(head).toEqual({ bytes: 8, etag: expect.stringMatching(/^"[0-9a-f]{32}"$/) })
    expect(await blobs.copy('uploads/org_a/file_meta', 'files/org_a/file_meta', { contentType: 'text/csv', ifMatch: head!.etag, ifAbsent: true })).toBe('copied')
    const got = await fetch((await blobs.presign('GET', 'files/org_a/file_meta', 900)).url)
    expect(await got.text()).toBe('a,b\n1,2\n')
    expect(got.headers.get('content-type')).toBe('text/csv')
    expect(got.headers.get('content-disposition')).toBeNull()
    expect(got.headers.get('content-encoding')).toBeNull()
    expect(got.headers.get('x-amz-meta-owner')).toBeNull()
  })

  it('answers missing when there is no source', async () => {
    expect(await blobs.copy('uploads/org_a/file_none', 'files/org_a/file_none', { contentType: 'text/csv' })).toBe('missing')
    expect(await blobs.head('files/org_a/file_none')).toBeUndefined()
  })
})
