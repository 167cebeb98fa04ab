import { createHash, randomBytes } from 'node:crypto'

/** Prefixed random ids, e.g. exec_3fK9...; 144 bits of randomness. */
export const newId = (prefix: string) => `${prefix}_${randomBytes(18).toString('base64url')}`

export const newApiKey = () => `sk_${randomBytes(32).toString('base64url')}`

export const hashApiKey = (key: string) => createHash('sha256').update(key, 'utf8').digest('hex')
