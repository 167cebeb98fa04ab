import type { SandboxPayload, SandboxResult } from '../contract/sandbox'

/** Runs one code block in an isolated sandbox on behalf of one organization. */
export interface Sandbox {
  run(payload: SandboxPayload, options: { organizationId: string; signal?: AbortSignal }): Promise<SandboxResult>
}

export interface ApiKeyRecord {
  organizationId: string
  keyId: string
}

/** API keys are stored as SHA-256 hashes; the key itself is shown once, when it is issued. */
export interface KeyStore {
  findByHash(hash: string): Promise<ApiKeyRecord | undefined>
  put(hash: string, record: ApiKeyRecord): Promise<void>
}

export interface Clock {
  now(): Date
}

/** Object storage for file bytes and large session state (S3; s3rver locally). */
export interface BlobStore {
  put(key: string, body: Uint8Array, contentType?: string): Promise<void>
  /** undefined when there is no such object. */
  get(key: string): Promise<Uint8Array | undefined>
  /** The object's bytes as a stream, for downloads. */
  stream(key: string): Promise<{ body: NodeJS.ReadableStream; bytes: number } | undefined>
  /** Its size, and its ETag when the store has one (for `copy`'s `ifMatch`). */
  head(key: string): Promise<{ bytes: number; etag?: string } | undefined>
  delete(keys: string[]): Promise<void>
  /**
   * Copies an object to another key inside the store, with `contentType` and none of the source's
   * other metadata. `ifMatch`: only while the source still has that ETag; `ifAbsent`: only while
   * nothing is at `to` (so `to` is written once). 'copied'; 'missing' when there is no source;
   * 'refused' when a condition failed. A store that checks no conditions (s3rver) copies anyway,
   * so a caller that must know what landed checks `to` afterwards.
   */
  copy(from: string, to: string, options?: CopyOptions): Promise<'copied' | 'missing' | 'refused'>
  /**
   * A URL that lets its holder GET (or PUT) this one object until `expiresAt`; a GET may name
   * the content type and download file name the answer carries, a PUT the only body length the
   * store will take. The URL lives `seconds` at most, less when the signing credentials expire
   * sooner (temporary credentials end their URLs with them) or past SigV4's seven days. A URL
   * signed earlier may be handed out again while at least `minSeconds` of it remain (default:
   * two thirds of `seconds`).
   */
  presign(method: 'GET' | 'PUT', key: string, seconds: number, options?: PresignOptions): Promise<PresignedUrl>
}

export interface CopyOptions {
  contentType?: string
  ifMatch?: string
  ifAbsent?: boolean
}

export interface PresignOptions {
  download?: { contentType: string; filename: string }
  /** PUT only: the body must be exactly this long (signed into the URL; S3 refuses another length). */
  contentLength?: number
  minSeconds?: number
}

export interface PresignedUrl {
  url: string
  /** When the URL stops working (unix seconds): what the URL itself carries. */
  expiresAt: number
}
