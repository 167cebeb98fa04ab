import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { contractJsonSchema, SandboxPayload, SandboxResult } from '../../functions/contract/sandbox'

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'contract')
const load = (kind: string, validity: string) =>
  readdirSync(join(FIXTURES, kind, validity)).map((name) => [name, JSON.parse(readFileSync(join(FIXTURES, kind, validity, name), 'utf8'))] as const)

describe('sandbox contract (same fixtures as python-runtime/tests/test_contract.py)', () => {
  it('the Python side validates against the schema generated from these zod types', () => {
    const committed = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'python-runtime', 'sandbox', 'contract.schema.json'), 'utf8'))
    // If this fails, run `npm run contract` and commit the schema.
    expect(committed).toEqual(JSON.parse(JSON.stringify(contractJsonSchema())))
  })

  it.each(load('payload', 'valid'))('accepts payload %s', (_name, data) => {
    expect(SandboxPayload.safeParse(data).success).toBe(true)
  })
  it.each(load('payload', 'invalid'))('refuses payload %s', (_name, data) => {
    expect(SandboxPayload.safeParse(data).success).toBe(false)
  })
  it.each(load('result', 'valid'))('accepts result %s', (_name, data) => {
    expect(SandboxResult.safeParse(data).success).toBe(true)
  })
  it.each(load('result', 'invalid'))('refuses result %s', (_name, data) => {
    expect(SandboxResult.safeParse(data).success).toBe(false)
  })
})
