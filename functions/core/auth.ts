import { forbidden, unauthorized } from './errors'
import { hashApiKey } from './ids'
import type { KeyStore } from './ports'

export interface Caller {
  organizationId: string
  keyId: string
}

const BEARER = /^Bearer ([A-Za-z0-9_\-]{10,200})$/

/** Resolves the caller from the Authorization header (401 when missing or unknown). */
export async function authenticate(authorization: string | undefined, keys: KeyStore): Promise<Caller> {
  const match = authorization?.trim().match(BEARER)
  if (!match) throw unauthorized()
  const record = await keys.findByHash(hashApiKey(match[1]))
  if (!record) throw unauthorized('The API key is not valid.')
  return record
}

/** A body that names an organization must name the caller's own (403 otherwise). */
export function assertOrganization(caller: Caller, organizationId: string | undefined): void {
  if (organizationId !== undefined && organizationId !== caller.organizationId) {
    throw forbidden(`This API key belongs to another organization than ${JSON.stringify(organizationId)}.`)
  }
}
