import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { completeUpload, createUpload, deleteFile, fileKey, type FilesDeps, type StoredFile, uploadKey } from '../../functions/core/files'
import type { BlobStore, CopyOptions, PresignOptions } from '../../functions/core/ports'
import type { FileStore } from '../../functions/core/stores'

// Completing a presigned upload against a blob store that behaves as S3 does (ETags, conditional
// copies), which s3rver cannot show: the file's key is written once, from the object whose size
// was checked, and nothing a client PUTs afterwards reaches it.

const caller = { organizationId: 'org_a', keyId: 'k' }

interface Obj {
  data: Buffer
  etag: string
  contentType?: string
}

/** S3 in memory: ETags, and copies that honour ifMatch and ifAbsent unless told not to (s3rver). */
class MemoryBlobs implements BlobStore {
  readonly objects = new Map<string, Obj>()
  readonly presigned: { method: string; key: string; options?: PresignOptions }[] = []
  readonly copies: { from: string; to: string; options?: CopyOptions }[] = []
  /** Runs just before a copy reads its source (a client's PUT racing the completion). */
  beforeCopy?: () => void

  constructor(private readonly checksConditions = true) {}

  clientPut(key: string, body: string | Buffer) {
    const data = Buffer.from(body)
    this.objects.set(key, { data, etag: `"${createHash('md5').update(data).digest('hex')}"` })
  }
  async put(key: string, body: Uint8Array, contentType?: string) {
    this.clientPut(key, Buffer.from(body))
    this.objects.get(key)!.contentType = contentType
  }
  async get(key: string) {
    return this.objects.get(key)?.data
  }
  async stream(): Promise<undefined> {
    return undefined
  }
  async head(key: string) {
    const o = this.objects.get(key)
    return o ? { bytes: o.data.length, etag: o.etag } : undefined
  }
  async delete(keys: string[]) {
    for (const k of keys) this.objects.delete(k)
  }
  async copy(from: string, to: string, options: CopyOptions = {}) {
    this.copies.push({ from, to, options })
    this.beforeCopy?.()
    const source = this.objects.get(from)
    if (!source) return 'missing' as const
    if (this.checksConditions && options.ifMatch !== undefined && options.ifMatch !== source.etag) return 'refused' as const
    if (this.checksConditions && options.ifAbsent && this.objects.has(to)) return 'refused' as const
    this.objects.set(to, { ...source, contentType: options.contentType })
    return 'copied' as const
  }
  async presign(method: 'GET' | 'PUT', key: string, seconds: number, options?: PresignOptions) {
    this.presigned.push({ method, key, options })
    return { url: `https://bucket.example/${key}`, expiresAt: 1_000 + seconds }
  }
}

function memoryFiles(): FileStore & { rows: Map<string, StoredFile> } {
  const rows = new Map<string, StoredFile>()
  return {
    rows,
    async putFile(file) {
      rows.set(file.id, structuredClone(file))
    },
    async getFile(org, id) {
      const f = rows.get(id)
      return f && f.organization_id === org ? structuredClone(f) : undefined
    },
    async listFiles() {
      return [...rows.values()]
    },
    async deleteFile(_org, id) {
      return rows.delete(id)
    },
  }
}

function setup(checksConditions = true) {
  const blobs = new MemoryBlobs(checksConditions)
  const files = memoryFiles()
  const deps: FilesDeps = { files, blobs, clock: { now: () => new Date(1_700_000_000_000) }, maxFileBytes: 1 << 30, urlSeconds: 900 }
  return { blobs, files, deps }
}

async function started(deps: FilesDeps, bytes = 8) {
  const up = await createUpload(caller, { filename: 'data.csv', purpose: 'assistants', bytes }, deps)
  return { id: up.file.id, staged: uploadKey('org_a', up.file.id), key: fileKey('org_a', up.file.id), up }
}

describe('POST /v1/files/uploads', () => {
  it('presigns a PUT of exactly the declared length to the staging key, never to the file\'s key', async () => {
    const { blobs, deps } = setup()
    const { staged, up } = await started(deps, 8)
    expect(blobs.presigned).toEqual([{ method: 'PUT', key: staged, options: { minSeconds: 900, contentLength: 8 } }])
    expect(up.upload_url).toBe(`https://bucket.example/${staged}`)
    expect(staged).toMatch(/^uploads\/org_a\/file_/)
  })
})

describe('POST /v1/files/uploads/{id}/complete', () => {
  it('copies the checked object (its ETag) to the file\'s key, once, with the file\'s type, then drops the staging object', async () => {
    const { blobs, files, deps } = setup()
    const { id, staged, key } = await started(deps)
    blobs.clientPut(staged, 'a,b\n1,2\n')
    const etag = (await blobs.head(staged))!.etag
    expect(await completeUpload(caller, id, deps)).toMatchObject({ status: 'processed', bytes: 8 })
    expect(blobs.copies).toEqual([{ from: staged, to: key, options: { contentType: 'text/csv', ifMatch: etag, ifAbsent: true } }])
    expect(blobs.objects.get(key)!.data.toString()).toBe('a,b\n1,2\n')
    expect(blobs.objects.has(staged)).toBe(false)
    expect(files.rows.get(id)!.status).toBe('processed')
    // A PUT to the URL afterwards lands at the staging key only, and completing again changes nothing.
    blobs.clientPut(staged, 'z'.repeat(5 * 1024 * 1024))
    expect(await completeUpload(caller, id, deps)).toMatchObject({ status: 'processed', bytes: 8 })
    expect(blobs.objects.get(key)!.data.toString()).toBe('a,b\n1,2\n')
    expect(blobs.copies).toHaveLength(1)
  })

  it('refuses (409 upload_changed) when the staging object is replaced between the check and the copy', async () => {
    const { blobs, files, deps } = setup()
    const { id, staged, key } = await started(deps)
    blobs.clientPut(staged, 'a,b\n1,2\n')
    blobs.beforeCopy = () => blobs.clientPut(staged, 'x,y\n3,4\n')
    await expect(completeUpload(caller, id, deps)).rejects.toMatchObject({ statusCode: 409, code: 'upload_changed' })
    expect(blobs.objects.has(key)).toBe(false)
    expect(files.rows.get(id)!.status).toBe('pending')
    // Completing again checks and copies what is there now.
    blobs.beforeCopy = undefined
    expect(await completeUpload(caller, id, deps)).toMatchObject({ status: 'processed' })
    expect(blobs.objects.get(key)!.data.toString()).toBe('x,y\n3,4\n')
  })

  it('never overwrites the file\'s key: a completion that copied but died before recording is finished with that copy', async () => {
    const { blobs, files, deps } = setup()
    const { id, staged, key } = await started(deps)
    // An earlier completion copied the checked bytes, then died; the client PUT other bytes since.
    blobs.clientPut(key, 'a,b\n1,2\n')
    blobs.clientPut(staged, 'x,y\n3,4\n')
    expect(await completeUpload(caller, id, deps)).toMatchObject({ status: 'processed', bytes: 8 })
    expect(blobs.objects.get(key)!.data.toString()).toBe('a,b\n1,2\n')
    expect(files.rows.get(id)!.status).toBe('processed')
    expect(blobs.objects.has(staged)).toBe(false)
  })

  it('two completions at once: one copies, the other answers the same file', async () => {
    const { blobs, deps } = setup()
    const { id, staged, key } = await started(deps)
    blobs.clientPut(staged, 'a,b\n1,2\n')
    const [a, b] = await Promise.all([completeUpload(caller, id, deps), completeUpload(caller, id, deps)])
    expect(a).toEqual(b)
    expect(a).toMatchObject({ status: 'processed', bytes: 8 })
    expect(blobs.objects.get(key)!.data.toString()).toBe('a,b\n1,2\n')
  })

  it('where conditions are not checked (s3rver), checks what landed: a size changed after the check is refused and removed', async () => {
    const { blobs, files, deps } = setup(false)
    const { id, staged, key } = await started(deps)
    blobs.clientPut(staged, 'a,b\n1,2\n')
    blobs.beforeCopy = () => blobs.clientPut(staged, 'z'.repeat(5 * 1024 * 1024))
    await expect(completeUpload(caller, id, deps)).rejects.toMatchObject({ statusCode: 400, code: 'upload_size_mismatch' })
    expect(blobs.objects.has(key)).toBe(false)
    expect(blobs.objects.has(staged)).toBe(false)
    expect(files.rows.get(id)!.status).toBe('pending')
  })

  it('a wrong size is refused and discarded; nothing at all is 409 upload_missing', async () => {
    const { blobs, deps } = setup()
    const { id, staged, key } = await started(deps, 10)
    await expect(completeUpload(caller, id, deps)).rejects.toMatchObject({ statusCode: 409, code: 'upload_missing' })
    blobs.clientPut(staged, 'only five')
    await expect(completeUpload(caller, id, deps)).rejects.toMatchObject({ statusCode: 400, code: 'upload_size_mismatch' })
    expect(blobs.objects.has(staged)).toBe(false)
    expect(blobs.objects.has(key)).toBe(false)
    expect(blobs.copies).toEqual([])
  })
})

describe('DELETE /v1/files/{id}', () => {
  it('of a pending upload also removes its staging object', async () => {
    const { blobs, deps } = setup()
    const { id, staged } = await started(deps)
    blobs.clientPut(staged, 'a,b\n1,2\n')
    await deleteFile(caller, id, deps)
    expect(blobs.objects.size).toBe(0)
  })
})
