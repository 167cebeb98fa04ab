/**
 * The files API: uploads (direct or presigned), listing, download, deletion, and the check
 * that turns file ids named by a request into files the code can read. Every file belongs to
 * one organization: an id of another organization is simply not found.
 */
import type { FileObject, FilePurpose, FileUpload, UploadRequest } from '../contract/files'
import type { Caller } from './auth'
import { assertOrganization } from './auth'
import { ApiError, duplicateFileName, fileContentMissing, fileNotReady, fileTooLarge, notFound } from './errors'
import { newId } from './ids'
import type { BlobStore, Clock } from './ports'
import type { FileStore } from './stores'

export interface FilesDeps {
  files: FileStore
  blobs: BlobStore
  clock: Clock
  /** Largest file a presigned upload may register. */
  maxFileBytes: number
  /** How long a presigned URL handed to a client lives at most (PRESIGNED_URL_SECONDS). */
  urlSeconds: number
}

/** What one request may carry in its body: API Gateway's 10 MB less room for the multipart framing. */
export const MAX_DIRECT_UPLOAD_BYTES = 10 * 1024 * 1024 - 64 * 1024

export type StoredFile = FileObject & { key: string }

export const fileKey = (organizationId: string, id: string) => `files/${organizationId}/${id}`
/**
 * Where a presigned upload's client PUTs its bytes: never the file's own key. Completing the
 * upload checks this object and copies it to `fileKey`, which no URL handed to a client can
 * write; so a URL that still works after the check (it lives PRESIGNED_URL_SECONDS) can only
 * replace this staging object, which the bucket expires after a day (lib/constructs/storage.ts).
 */
export const uploadKey = (organizationId: string, id: string) => `uploads/${organizationId}/${id}`

const TYPES: Record<string, string> = {
  csv: 'text/csv', tsv: 'text/tab-separated-values', txt: 'text/plain', md: 'text/markdown', json: 'application/json',
  jsonl: 'application/jsonl', xml: 'application/xml', html: 'text/html', htm: 'text/html', py: 'text/x-python',
  yaml: 'application/yaml', yml: 'application/yaml', log: 'text/plain', sql: 'application/sql',
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', svg: 'image/svg+xml', webp: 'image/webp',
  pdf: 'application/pdf', zip: 'application/zip', gz: 'application/gzip', parquet: 'application/vnd.apache.parquet',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet', xls: 'application/vnd.ms-excel',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document', pkl: 'application/octet-stream',
  npy: 'application/octet-stream', h5: 'application/x-hdf5',
}

/** The declared type when it says something, otherwise the one the extension suggests. */
export function mediaType(filename: string, declared?: string): string {
  const clean = declared?.split(';')[0]!.trim().toLowerCase()
  if (clean && clean !== 'application/octet-stream') return clean
  const ext = filename.toLowerCase().split('.').pop() ?? ''
  return TYPES[ext] ?? 'application/octet-stream'
}

const publicFile = ({ key: _key, ...file }: StoredFile): FileObject => file

function record(org: string, id: string, filename: string, bytes: number, mime: string, purpose: FilePurpose, status: FileObject['status'], now: Date, source?: FileObject['source']): StoredFile {
  return {
    id,
    object: 'file',
    organization_id: org,
    filename,
    bytes,
    mime_type: mime,
    purpose,
    status,
    created_at: Math.floor(now.getTime() / 1000),
    ...(source ? { source } : {}),
    key: fileKey(org, id),
  }
}

/** POST /v1/files (multipart): the bytes came with the request. */
export async function uploadFile(
  caller: Caller,
  upload: { organizationId?: string; filename: string; purpose: FilePurpose; mimeType?: string; data: Uint8Array },
  deps: FilesDeps,
): Promise<FileObject> {
  assertOrganization(caller, upload.organizationId)
  if (upload.data.length > MAX_DIRECT_UPLOAD_BYTES) {
    throw fileTooLarge(upload.data.length, MAX_DIRECT_UPLOAD_BYTES, 'Larger files go through POST /v1/files/uploads (a presigned upload).')
  }
  const file = record(caller.organizationId, newId('file'), upload.filename, upload.data.length, mediaType(upload.filename, upload.mimeType), upload.purpose, 'processed', deps.clock.now())
  await deps.blobs.put(file.key, upload.data, file.mime_type)
  await deps.files.putFile(file)
  return publicFile(file)
}

/** POST /v1/files/uploads: registers a pending file and hands out a URL to PUT its bytes to. */
export async function createUpload(caller: Caller, request: UploadRequest, deps: FilesDeps): Promise<FileUpload> {
  assertOrganization(caller, request.organization_id)
  if (request.bytes > deps.maxFileBytes) throw fileTooLarge(request.bytes, deps.maxFileBytes, '')
  const now = deps.clock.now()
  const file = record(caller.organizationId, newId('file'), request.filename, request.bytes, mediaType(request.filename, request.mime_type), request.purpose, 'pending', now)
  // A fresh URL for every upload (never one handed out before): the whole lifetime is the client's.
  // It writes the staging key only, and only a body of the declared length (on S3).
  const signed = await deps.blobs.presign('PUT', uploadKey(file.organization_id, file.id), deps.urlSeconds, {
    minSeconds: deps.urlSeconds,
    contentLength: file.bytes,
  })
  await deps.files.putFile(file)
  return {
    object: 'file.upload',
    file: publicFile(file),
    upload_url: signed.url,
    method: 'PUT',
    // When the URL stops working: what it carries, never past its signing credentials' expiry.
    expires_at: signed.expiresAt,
    complete_url: `/v1/files/uploads/${file.id}/complete`,
  }
}

const uploadMissing = (id: string) =>
  new ApiError(409, 'upload_missing', `Nothing was uploaded for file ${id} yet: PUT its bytes to the upload_url first.`)

const sizeMismatch = (id: string, got: number, declared: number) =>
  new ApiError(
    400,
    'upload_size_mismatch',
    `The upload for file ${id} has ${got} bytes but ${declared} were declared; it was discarded. PUT the declared bytes to the upload_url again while it works, or start again with POST /v1/files/uploads.`,
  )

/**
 * POST /v1/files/uploads/{id}/complete: checks what arrived at the staging key and makes it the
 * file. The bytes are copied to the file's own key, written once (If-None-Match) from the very
 * object whose size was checked (x-amz-copy-source-if-match its ETag), and the size is checked
 * again where they landed; the record turns `processed` only then, and the staging object is
 * deleted last. A PUT to the upload URL afterwards only makes a new staging object that nothing
 * reads, so a file never changes once checked. Idempotent: a repeated or concurrent completion
 * answers the same file.
 */
export async function completeUpload(caller: Caller, id: string, deps: FilesDeps): Promise<FileObject> {
  const file = await deps.files.getFile(caller.organizationId, id)
  if (!file) throw notFound('file', id)
  if (file.status === 'processed') return publicFile(file)
  const staged = uploadKey(file.organization_id, file.id)
  const head = await deps.blobs.head(staged)
  if (!head) {
    const done = await completedMeanwhile(file, deps)
    if (done) return done
    throw uploadMissing(id)
  }
  if (head.bytes !== file.bytes) {
    await deps.blobs.delete([staged])
    throw sizeMismatch(id, head.bytes, file.bytes)
  }
  const copied = await deps.blobs.copy(staged, file.key, { contentType: file.mime_type, ifMatch: head.etag, ifAbsent: true })
  if (copied !== 'copied') {
    // Another completion got there first (its copy holds or it deleted the staging object), or
    // the staging object was replaced since it was checked: then complete it again.
    const done = await completedMeanwhile(file, deps)
    if (done) return done
    throw copied === 'missing'
      ? uploadMissing(id)
      : new ApiError(409, 'upload_changed', `The upload for file ${id} was replaced while it was being completed; complete it again.`)
  }
  // Where the store checks no condition (s3rver), what landed is checked itself.
  const landed = await deps.blobs.head(file.key)
  if (landed?.bytes !== file.bytes) {
    await deps.blobs.delete([file.key, staged])
    throw sizeMismatch(id, landed?.bytes ?? 0, file.bytes)
  }
  return publicFile(await markProcessed(file, staged, deps))
}

/** The file as another completion left it: processed, or its bytes already in place (then recorded). */
async function completedMeanwhile(file: StoredFile, deps: FilesDeps): Promise<FileObject | undefined> {
  const now = await deps.files.getFile(file.organization_id, file.id)
  if (!now) throw notFound('file', file.id)
  if (now.status === 'processed') return publicFile(now)
  // Only a completion writes the file's key of an upload, once, after checking the source.
  if ((await deps.blobs.head(file.key))?.bytes !== file.bytes) return undefined
  return publicFile(await markProcessed(file, uploadKey(file.organization_id, file.id), deps))
}

async function markProcessed(file: StoredFile, staged: string, deps: FilesDeps): Promise<StoredFile> {
  const done: StoredFile = { ...file, status: 'processed' }
  await deps.files.putFile(done)
  // Last, so a completion that fails before this can be repeated; one left behind expires.
  await deps.blobs.delete([staged]).catch(() => undefined)
  return done
}

export async function getFile(caller: Caller, id: string, deps: Pick<FilesDeps, 'files'>): Promise<FileObject> {
  const file = await deps.files.getFile(caller.organizationId, id)
  if (!file) throw notFound('file', id)
  return publicFile(file)
}

export async function listFiles(caller: Caller, deps: Pick<FilesDeps, 'files'>, options: { limit: number; after?: string; purpose?: string }) {
  const data = await deps.files.listFiles(caller.organizationId, { ...options, limit: options.limit + 1 })
  const page = data.slice(0, options.limit)
  return { object: 'list', data: page, has_more: data.length > options.limit, last_id: page.at(-1)?.id ?? null }
}

/** Past this, a download is sent to S3 directly: API Gateway streams only 10 MB at full speed. */
export const MAX_PROXIED_DOWNLOAD_BYTES = 10 * 1024 * 1024

export const contentDisposition = (filename: string) => `attachment; filename*=UTF-8''${encodeURIComponent(filename)}`

/**
 * The bytes of a file, as a stream, or for a large file a short-lived URL to fetch them from and
 * when it expires (a URL signed for an earlier download may be handed out again while at least
 * two thirds of its lifetime remain).
 */
export async function fileContent(caller: Caller, id: string, deps: FilesDeps) {
  const file = await deps.files.getFile(caller.organizationId, id)
  if (!file) throw notFound('file', id)
  if (file.status !== 'processed') throw fileNotReady(id)
  if (file.bytes > MAX_PROXIED_DOWNLOAD_BYTES) {
    const signed = await deps.blobs.presign('GET', file.key, deps.urlSeconds, { download: { contentType: file.mime_type, filename: file.filename } })
    return { file: publicFile(file), redirect: signed }
  }
  const content = await deps.blobs.stream(file.key)
  if (!content) throw fileContentMissing(id)
  return { file: publicFile(file), ...content }
}

export async function deleteFile(caller: Caller, id: string, deps: FilesDeps) {
  const file = await deps.files.getFile(caller.organizationId, id)
  if (!file) throw notFound('file', id)
  await deps.files.deleteFile(caller.organizationId, id)
  // A pending upload's bytes may still be at its staging key (a PUT could even come later: the
  // bucket expires what is left there).
  await deps.blobs.delete(file.status === 'pending' ? [file.key, uploadKey(file.organization_id, id)] : [file.key])
  return { id, object: 'file', deleted: true }
}

/** The files a request names, checked: each exists in the organization, is complete, and names differ. */
export async function resolveFiles(organizationId: string, ids: readonly string[], deps: Pick<FilesDeps, 'files'>): Promise<StoredFile[]> {
  const unique = [...new Set(ids)]
  const files = await Promise.all(unique.map((id) => deps.files.getFile(organizationId, id)))
  const names = new Set<string>()
  return files.map((file, i) => {
    if (!file) throw notFound('file', unique[i]!)
    if (file.status !== 'processed') throw fileNotReady(file.id)
    if (names.has(file.filename)) throw duplicateFileName(file.filename)
    names.add(file.filename)
    return file
  })
}

/** A generated file: stored, registered, and from then on an ordinary file. */
export async function storeGenerated(
  deps: Pick<FilesDeps, 'files' | 'blobs' | 'clock'>,
  org: string,
  item: { id?: string; filename: string; mimeType: string; purposeSource: FileObject['source']; data?: Uint8Array; uploadedBytes?: number },
): Promise<StoredFile> {
  const id = item.id ?? newId('file')
  const bytes = item.data?.length ?? item.uploadedBytes ?? 0
  const file = record(org, id, item.filename, bytes, item.mimeType, 'assistants_output', 'processed', deps.clock.now(), item.purposeSource)
  if (item.data) await deps.blobs.put(file.key, item.data, file.mime_type)
  await deps.files.putFile(file)
  return file
}
