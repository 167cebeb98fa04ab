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
