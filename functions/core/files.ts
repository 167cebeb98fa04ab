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
  const signed = await deps.blobs.presign('PUT', file.key, deps.urlSeconds, { minSeconds: deps.urlSeconds })
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

/** POST /v1/files/uploads/{id}/complete: the bytes are in place; check their size and register them. */
export async function completeUpload(caller: Caller, id: string, deps: FilesDeps): Promise<FileObject> {
  const file = await deps.files.getFile(caller.organizationId, id)
  if (!file) throw notFound('file', id)
  if (file.status === 'processed') return publicFile(file)
  const head = await deps.blobs.head(file.key)
  if (!head) throw new ApiError(409, 'upload_missing', `Nothing was uploaded for file ${id} yet: PUT its bytes to the upload_url first.`)
  if (head.bytes !== file.bytes) {
    await deps.blobs.delete([file.key])
    throw new ApiError(
      400,
      'upload_size_mismatch',
      `The upload for file ${id} has ${head.bytes} bytes but ${file.bytes} were declared; it was discarded. Start again with POST /v1/files/uploads.`,
    )
  }
  const done: StoredFile = { ...file, status: 'processed' }
  await deps.files.putFile(done)
  return publicFile(done)
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
  await deps.blobs.delete([file.key])
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
