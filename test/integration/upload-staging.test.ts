import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, execute, startTestService, TEST_KEY } from '../support/local'

// Presigned uploads through the real local stack (HTTP API, dynalite, s3rver, Python workers).
// A client PUTs to a staging key; POST .../complete checks what arrived and copies it to the
// file's own key, which no URL handed to a client can write. So a URL that keeps working after
// the check (15 minutes) can never change a file the API has checked. s3rver checks neither
// signatures nor conditional headers, so these tests hold without S3's own refusals.
let ctx: Awaited<ReturnType<typeof startTestService>>

const SMALL = 'a,b\n1,2\n' // 8 bytes

const fileKey = (id: string) => `files/org_test/${id}`
const stagingKey = (id: string) => `uploads/org_test/${id}`

async function startUpload(bytes: number, filename = 'small.csv') {
  const started = await api(ctx.service, 'POST', '/v1/files/uploads', { filename, purpose: 'assistants', bytes })
  expect(started.status).toBe(200)
  return started.body as { file: { id: string }; upload_url: string; complete_url: string }
}

const put = (url: string, body: Buffer | string) => fetch(url, { method: 'PUT', body })
const complete = (id: string) => api(ctx.service, 'POST', `/v1/files/uploads/${id}/complete`)

/** The file's bytes, through the API and in the bucket, are exactly `expected` (sizes first: short failures). */
async function expectStored(id: string, expected: string) {
  const res = await fetch(`${ctx.service.url}/v1/files/${id}/content`, { headers: { authorization: `Bearer ${TEST_KEY}` } })
  expect(res.status).toBe(200)
  const got = Buffer.from(await res.arrayBuffer())
  expect(got.length).toBe(expected.length)
  expect(got.toString()).toBe(expected)
  expect(await ctx.service.blobs.head(fileKey(id))).toMatchObject({ bytes: expected.length })
}

beforeAll(async () => {
  ctx = await startTestService({ SANDBOX_SLOT_UID_BASE: '66600', SANDBOX_WORKERS: '1' })
})
afterAll(async () => {
  await ctx?.stop()
})

describe('a presigned upload URL after completion', () => {
  it('cannot change the file: a 5 MB PUT to the same URL leaves its 8 bytes, and an execution with it works', async () => {
    const up = await startUpload(SMALL.length)
    expect((await put(up.upload_url, SMALL)).status).toBe(200)
    const done = await complete(up.file.id)
    expect(done.body).toMatchObject({ id: up.file.id, status: 'processed', bytes: 8 })

    // The reviewer's replay: the URL still works for minutes, with any body.
    const large = Buffer.alloc(5 * 1024 * 1024, 0x7a)
    await put(up.upload_url, large)

    expect((await api(ctx.service, 'GET', `/v1/files/${up.file.id}`)).body).toMatchObject({ status: 'processed', bytes: 8 })
    // Before the fix: 503 sandbox_unavailable, "Request must be smaller than 6291456 bytes" (the
    // record's 8 bytes sent the file inline, and the 5 MB that replaced it did not fit).
    const res = await execute(ctx.service, "import os\nprint(os.path.getsize('small.csv'), open('small.csv').read().split())", { file_ids: [up.file.id] })
    expect(res.body.error?.message ?? null).toBeNull()
    expect(res.body.status).toBe('completed')
    expect(res.body.outputs).toEqual([{ type: 'text', source: 'stdout', text: "8 ['a,b', '1,2']" }])
    await expectStored(up.file.id, SMALL)
    // Completing again changes nothing either (the file is done).
    expect((await complete(up.file.id)).body).toMatchObject({ status: 'processed', bytes: 8 })
    await expectStored(up.file.id, SMALL)
  })

  it('never hands out a URL for the file\'s own key, and signs the declared size into it', async () => {
    const up = await startUpload(SMALL.length)
    const url = new URL(up.upload_url)
    expect(url.pathname).toMatch(new RegExp(`/${stagingKey(up.file.id)}$`))
    expect(url.pathname).not.toContain('/files/')
    // S3 then refuses a body of another length (SignatureDoesNotMatch); s3rver checks no signature.
    expect(url.searchParams.get('X-Amz-SignedHeaders')!.split(';')).toEqual(['content-length', 'host'])
  })
})

describe('an upload that is never completed', () => {
  it('stays a staging object (which the bucket expires), never the file\'s bytes; the file stays pending and unusable', async () => {
    const up = await startUpload(SMALL.length, 'left.csv')
    expect((await put(up.upload_url, SMALL)).status).toBe(200)
    expect(await ctx.service.blobs.head(stagingKey(up.file.id))).toMatchObject({ bytes: 8 })
    expect(await ctx.service.blobs.head(fileKey(up.file.id))).toBeUndefined()
    expect((await api(ctx.service, 'GET', `/v1/files/${up.file.id}`)).body).toMatchObject({ status: 'pending' })
    expect((await execute(ctx.service, '1', { file_ids: [up.file.id] })).body.error.code).toBe('file_not_ready')
    const download = await api(ctx.service, 'GET', `/v1/files/${up.file.id}/content`)
    expect(download.status).toBe(409)
  })

  it('is removed with the file when the pending file is deleted', async () => {
    const up = await startUpload(SMALL.length, 'gone.csv')
    await put(up.upload_url, SMALL)
    expect(await ctx.service.blobs.head(stagingKey(up.file.id))).toMatchObject({ bytes: 8 })
    expect((await api(ctx.service, 'DELETE', `/v1/files/${up.file.id}`)).body).toMatchObject({ deleted: true })
    expect(await ctx.service.blobs.head(stagingKey(up.file.id))).toBeUndefined()
  })
})

describe('completion', () => {
  it('refuses a wrong size, discards the staging object, and stores nothing under the file\'s key', async () => {
    const up = await startUpload(10, 'liar.txt')
    await put(up.upload_url, 'only five')
    expect(await ctx.service.blobs.head(stagingKey(up.file.id))).toMatchObject({ bytes: 9 })
    const refused = await complete(up.file.id)
    expect(refused.status).toBe(400)
    expect(refused.body.error.code).toBe('upload_size_mismatch')
    expect(await ctx.service.blobs.head(stagingKey(up.file.id))).toBeUndefined()
    expect(await ctx.service.blobs.head(fileKey(up.file.id))).toBeUndefined()
    // The URL still works for its 15 minutes: the right bytes can still be completed.
    await put(up.upload_url, '0123456789')
    expect((await complete(up.file.id)).body).toMatchObject({ status: 'processed', bytes: 10 })
    await expectStored(up.file.id, '0123456789')
  })

  it('moves the bytes to the file\'s key and removes the staging object; two concurrent completions agree', async () => {
    const up = await startUpload(SMALL.length, 'twice.csv')
    await put(up.upload_url, SMALL)
    expect(await ctx.service.blobs.head(stagingKey(up.file.id))).toMatchObject({ bytes: 8 })
    const [a, b] = await Promise.all([complete(up.file.id), complete(up.file.id)])
    for (const r of [a, b]) expect(r.body).toMatchObject({ id: up.file.id, status: 'processed', bytes: 8 })
    expect(await ctx.service.blobs.head(stagingKey(up.file.id))).toBeUndefined()
    await expectStored(up.file.id, SMALL)
  })
})
