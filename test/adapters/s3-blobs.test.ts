import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { S3BlobStore } from '../../functions/adapters/s3-blobs'
import { LOCAL_BUCKET, S3RVER_CREDENTIALS, startLocalS3 } from '../../functions/local/s3'

// Presigned URLs against s3rver, which refuses a URL past X-Amz-Date + X-Amz-Expires ("Request
// has expired") as S3 does. S3 also refuses a URL once the temporary credentials that signed it
// have expired, whatever X-Amz-Expires says; s3rver knows nothing of sessions, so a URL that
// honestly carries the credentials' expiry is what makes it refuse at the same moment.
let s3: Awaited<ReturnType<typeof startLocalS3>>

const client = (credentials: S3ClientConfig['credentials']) =>
  new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', credentials, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' })

/** When a SigV4 URL stops working, by what it carries itself (unix seconds). */
function carriedExpiry(url: string): number {
  const q = new URL(url).searchParams
  const d = q.get('X-Amz-Date')!
  const signed = Date.UTC(+d.slice(0, 4), +d.slice(4, 6) - 1, +d.slice(6, 8), +d.slice(9, 11), +d.slice(11, 13), +d.slice(13, 15)) / 1000
  return signed + Number(q.get('X-Amz-Expires'))
}

beforeAll(async () => {
  s3 = await startLocalS3(undefined)
  await new S3BlobStore(client(S3RVER_CREDENTIALS), LOCAL_BUCKET).put('files/org_a/data.csv', Buffer.from('a,b\n1,2\n'))
})
afterAll(async () => {
  await s3?.stop()
})

describe('S3BlobStore.presign', () => {
  it('with long-term credentials: the asked-for lifetime, and says when the URL expires', async () => {
    const blobs = new S3BlobStore(client(S3RVER_CREDENTIALS), LOCAL_BUCKET)
    const now = Math.floor(Date.now() / 1000)
    const signed = await blobs.presign('GET', 'files/org_a/data.csv', 900)
    expect(signed.expiresAt).toBe(carriedExpiry(signed.url))
    expect(signed.expiresAt - now).toBeGreaterThanOrEqual(899)
    expect(signed.expiresAt - now).toBeLessThanOrEqual(901)
    expect(await (await fetch(signed.url)).text()).toBe('a,b\n1,2\n')
  })

  it('never outlives temporary credentials that expire sooner, and stops working when they do', async () => {
    const expiration = new Date(Date.now() + 3_000)
    const blobs = new S3BlobStore(client(async () => ({ ...S3RVER_CREDENTIALS, sessionToken: 'session', expiration })), LOCAL_BUCKET)
    const signed = await blobs.presign('GET', 'files/org_a/data.csv', 900)
    expect(signed.expiresAt).toBe(carriedExpiry(signed.url))
    expect(signed.expiresAt).toBeLessThanOrEqual(Math.floor(expiration.getTime() / 1000))
    expect((await fetch(signed.url)).status).toBe(200)
    await new Promise((r) => setTimeout(r, Math.max(0, signed.expiresAt * 1000 - Date.now()) + 1_200))
    const late = await fetch(signed.url)
    expect(late.status).toBe(403)
    expect(await late.text()).toContain('Request has expired')
  })

  it('reuses a URL only while the caller\'s minimum remains, and reports the reused URL\'s own expiry', async () => {
    const blobs = new S3BlobStore(client(S3RVER_CREDENTIALS), LOCAL_BUCKET)
    const first = await blobs.presign('PUT', 'files/org_a/slot', 600, { minSeconds: 60 })
    const again = await blobs.presign('PUT', 'files/org_a/slot', 600, { minSeconds: 60 })
    expect(again).toEqual(first)
    // Asking for more than is left signs anew.
    const longer = await blobs.presign('PUT', 'files/org_a/slot', 900, { minSeconds: 700 })
    expect(longer.url).not.toBe(first.url)
    expect(longer.expiresAt).toBe(carriedExpiry(longer.url))
  })

  it('caps a lifetime at SigV4\'s seven days', async () => {
    const blobs = new S3BlobStore(client(S3RVER_CREDENTIALS), LOCAL_BUCKET)
    const signed = await blobs.presign('GET', 'files/org_a/data.csv', 30 * 86_400)
    expect(Number(new URL(signed.url).searchParams.get('X-Amz-Expires'))).toBe(604_800)
    expect(signed.expiresAt).toBe(carriedExpiry(signed.url))
  })
})
