import { request, type Server } from 'node:http'
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LOCAL_BUCKET, newLocalS3Credentials, S3RVER_CREDENTIALS, startLocalS3 } from '../../functions/local/s3'
import { gatePort, startS3Gate } from '../../functions/local/s3-gate'

// The lambda posture's way to S3: a block can open sockets there, so only presigned URLs made
// with this process's secret pass; s3rver itself takes unsigned requests as anonymous.
let s3: Awaited<ReturnType<typeof startLocalS3>>
let gate: Server
let client: S3Client
const credentials = newLocalS3Credentials()
const refusals: string[] = []

/** A request to the gate carrying the Host the URL names, as the namespace's forwarder sends it. */
function viaGate(method: string, url: string, body?: string, extra: Record<string, string> = {}, rawTarget?: string): Promise<{ status: number; body: string }> {
  const target = new URL(url)
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: gatePort(gate), method, path: rawTarget ?? target.pathname + target.search, headers: { host: target.host, ...extra, ...(body ? { 'content-length': Buffer.byteLength(body) } : {}) } },
      (res) => {
        let text = ''
        res.on('data', (c) => (text += c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }))
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

beforeAll(async () => {
  s3 = await startLocalS3(undefined)
  gate = await startS3Gate(Number(new URL(s3.endpoint).port), credentials, 'us-east-1', (line) => refusals.push(line))
  client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', credentials, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' })
  await client.send(new PutObjectCommand({ Bucket: LOCAL_BUCKET, Key: 'files/org_a/secret.csv', Body: 'a,b\n1,2\n' }))
})
afterAll(async () => {
  await new Promise((r) => gate.close(r))
  await s3.stop()
})

describe('the S3 gate of the lambda posture', () => {
  it('passes a presigned GET and PUT made with the local secret', async () => {
    const get = await getSignedUrl(client, new GetObjectCommand({ Bucket: LOCAL_BUCKET, Key: 'files/org_a/secret.csv' }), { expiresIn: 60 })
    expect(await viaGate('GET', get)).toEqual({ status: 200, body: 'a,b\n1,2\n' })
    const put = await getSignedUrl(client, new PutObjectCommand({ Bucket: LOCAL_BUCKET, Key: 'state/org_a/part' }), { expiresIn: 60 })
    expect((await viaGate('PUT', put, 'state')).status).toBe(200)
  })

  it('refuses unsigned requests, other keys, a changed URL, another method and the published s3rver key', async () => {
    const url = await getSignedUrl(client, new GetObjectCommand({ Bucket: LOCAL_BUCKET, Key: 'files/org_a/secret.csv' }), { expiresIn: 60 })
    const published = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', credentials: S3RVER_CREDENTIALS, forcePathStyle: true })
    const forged = await getSignedUrl(published, new GetObjectCommand({ Bucket: LOCAL_BUCKET, Key: 'files/org_a/secret.csv' }), { expiresIn: 60 })
    const cases: [string, string][] = [
      ['GET', `${s3.endpoint}/${LOCAL_BUCKET}/files/org_a/secret.csv`],
      ['GET', `${s3.endpoint}/${LOCAL_BUCKET}?list-type=2`],
      ['GET', url.replace('secret.csv', 'other.csv')],
      ['DELETE', url],
      ['GET', forged],
    ]
    for (const [method, target] of cases) {
      const res = await viaGate(method, target)
      expect([method, target, res.status]).toEqual([method, target, 403])
      expect(res.body).toContain('AccessDenied')
      expect(res.body).not.toContain('a,b')
    }
    expect(refusals.length).toBeGreaterThanOrEqual(cases.length)
  })

  it('refuses unsigned x-amz-* headers: a PUT URL never copies another object', async () => {
    const put = await getSignedUrl(client, new PutObjectCommand({ Bucket: LOCAL_BUCKET, Key: 'state/org_b/slot' }), { expiresIn: 60 })
    const res = await viaGate('PUT', put, '', { 'x-amz-copy-source': `/${LOCAL_BUCKET}/files/org_a/secret.csv` })
    expect(res.status).toBe(403)
    expect(res.body).toContain('x-amz-copy-source')
  })

  it('refuses a target that parsing would change: a signed path must name the file s3rver writes', async () => {
    const put = new URL(await getSignedUrl(client, new PutObjectCommand({ Bucket: LOCAL_BUCKET, Key: 'files/org_b/own' }), { expiresIn: 60 }))
    const tricks = [
      // Parses to the signed path; s3rver would write outside the bucket (a review's escape).
      // (were it passed, s3rver would write in its own temporary folder, outside the bucket)
      `/${LOCAL_BUCKET}/../escape/EVIL\\..\\..\\${LOCAL_BUCKET}\\files\\org_b\\own`,
      `/${LOCAL_BUCKET}/files/org_a/x/../../org_b/own`,
      `/${LOCAL_BUCKET}/files/org_a/%2e%2e/org_b/own`,
      `/${LOCAL_BUCKET}/files/./org_b/own`,
    ]
    for (const path of tricks) {
      const res = await viaGate('PUT', put.toString(), 'x', {}, `${path}${put.search}`)
      expect([path, res.status]).toEqual([path, 403])
    }
    expect((await viaGate('PUT', put.toString(), 'x')).status).toBe(200)
  })

  it('refuses a URL past its expiry', async () => {
    const url = await getSignedUrl(client, new GetObjectCommand({ Bucket: LOCAL_BUCKET, Key: 'files/org_a/secret.csv' }), {
      expiresIn: 1,
      signingDate: new Date(Date.now() - 60_000),
    })
    expect((await viaGate('GET', url)).status).toBe(403)
  })
})
