/** Ids the public API accepts; each names its kind, so a wrong kind of id is a clear 400. */
import { z } from 'zod'

export const OrganizationId = z.string().regex(/^org_[A-Za-z0-9_-]{1,64}$/, 'must look like org_<id>')
export const SessionId = z.string().regex(/^sess_[A-Za-z0-9_-]{1,64}$/, 'must look like sess_<id>')
