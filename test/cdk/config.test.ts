import { describe, expect, it } from 'vitest'
import { DEFAULT_API_MEMORY_MB, parseInterpreterConfig, sandboxTimeoutSeconds } from '../../lib/config'
import { cdkJsonContext } from './support'

const minimal = { bedrockModelIds: ['anthropic.claude-3-5-haiku-20241022-v1:0'] }

describe('interpreter config', () => {
  it('parses the committed cdk.json context', () => {
    const config = parseInterpreterConfig(cdkJsonContext().interpreter)
    expect(config.sandbox.codeTimeoutMs).toBe(30_000)
    expect(config.sandbox.tenantIsolation).toBe(true)
  })

  it('fills documented defaults for omitted keys', () => {
    const config = parseInterpreterConfig(minimal)
    expect(config.sandbox).toEqual({
      memoryMb: 2048,
      // Room for a 50 MB input file, the files the code writes and its scratch.
      ephemeralStorageMb: 2048,
      // Nothing reserved: a new account keeps at least 100 unreserved and refuses any reservation.
      reservedConcurrency: null,
      codeTimeoutMs: 30_000,
      tenantIsolation: true,
    })
    expect(config.api).toEqual({
      // Sized for waiting on the model and the sandbox (docs/deploy.md, "API memory").
      memoryMb: 512,
      timeoutSeconds: 300,
      cloudWatchRole: true,
      sourceMaps: false,
    })
    expect(DEFAULT_API_MEMORY_MB).toBe(512)
    expect(config.files).toEqual({ maxFileBytes: 536_870_912, corsOrigins: [] })
    expect(config.logRetentionDays).toBe(30)
  })

  it('bounds files.maxFileBytes to 1 MiB .. 5 GiB, and below the sandbox /tmp', () => {
    const files = (maxFileBytes: number, sandbox = {}) => () => parseInterpreterConfig({ ...minimal, sandbox, files: { maxFileBytes } })
    expect(files(1024 ** 2)).not.toThrow()
    expect(files(1024 ** 2 - 1)).toThrow(/interpreter\.files\.maxFileBytes:/)
    expect(files(5 * 1024 ** 3, { ephemeralStorageMb: 10_240 })).not.toThrow()
    expect(files(5 * 1024 ** 3 + 1, { ephemeralStorageMb: 10_240 })).toThrow(/interpreter\.files\.maxFileBytes:/)
    expect(files(1.5)).toThrow(/interpreter\.files\.maxFileBytes:/)
    expect(files(2048 * 1024 ** 2)).toThrow(/interpreter\.files\.maxFileBytes: must be below the sandbox's \/tmp/)
  })

  it('accepts browser origins for CORS and rejects what a browser never sends', () => {
    const cors = (corsOrigins: unknown) => () => parseInterpreterConfig({ ...minimal, files: { corsOrigins } })
    expect(cors(['https://app.example.com', 'http://localhost:5173', 'https://*.example.com', '*'])).not.toThrow()
    expect(cors(['https://app.example.com/'])).toThrow(/interpreter\.files\.corsOrigins\.0: an origin like/)
    expect(cors(['app.example.com'])).toThrow(/interpreter\.files\.corsOrigins\.0:/)
    expect(cors(['https://app.example.com/upload'])).toThrow(/interpreter\.files\.corsOrigins\.0:/)
    expect(() => parseInterpreterConfig({ ...minimal, files: { maxBytes: 5 } })).toThrow(/interpreter\.files:.*maxBytes/)
  })

  it('names the offending key in the error', () => {
    expect(() => parseInterpreterConfig({ ...minimal, sandbox: { memoryMb: 64 } })).toThrow(
      /interpreter\.sandbox\.memoryMb:/,
    )
    expect(() => parseInterpreterConfig({ ...minimal, logRetentionDays: 31 })).toThrow(
      /interpreter\.logRetentionDays: must be one of/,
    )
  })

  it('takes booleans for api.cloudWatchRole and api.sourceMaps, and null or a whole number >= 1 for the reservation', () => {
    const api = (value: Record<string, unknown>) => () => parseInterpreterConfig({ ...minimal, api: value })
    expect(parseInterpreterConfig({ ...minimal, api: { cloudWatchRole: false, sourceMaps: true } }).api).toMatchObject({
      cloudWatchRole: false,
      sourceMaps: true,
    })
    expect(api({ cloudWatchRole: 'false' })).toThrow(/interpreter\.api\.cloudWatchRole:.*boolean/)
    expect(api({ sourceMaps: 1 })).toThrow(/interpreter\.api\.sourceMaps:.*boolean/)
    expect(api({ sourceMap: true })).toThrow(/interpreter\.api:.*sourceMap/)
    const reserve = (reservedConcurrency: unknown) => parseInterpreterConfig({ ...minimal, sandbox: { reservedConcurrency } }).sandbox.reservedConcurrency
    expect(reserve(null)).toBeNull()
    expect(reserve(50)).toBe(50)
    expect(() => reserve(0)).toThrow(/interpreter\.sandbox\.reservedConcurrency:/)
  })

  it('rejects misspelled keys instead of silently using a default', () => {
    expect(() => parseInterpreterConfig({ ...minimal, sandbox: { memoryMB: 4096 } })).toThrow(
      /interpreter\.sandbox:.*memoryMB/,
    )
  })

  it('rejects model ids that would widen the IAM grant', () => {
    expect(() => parseInterpreterConfig({ bedrockModelIds: ['anthropic.*'] })).toThrow(
      /interpreter\.bedrockModelIds\.0:/,
    )
    expect(() => parseInterpreterConfig({ bedrockModelIds: [] })).toThrow(/interpreter\.bedrockModelIds:/)
  })

  it('requires the API to outlast one sandbox invocation', () => {
    expect(() =>
      parseInterpreterConfig({ ...minimal, sandbox: { codeTimeoutMs: 60_000 }, api: { timeoutSeconds: 60 } }),
    ).toThrow(/interpreter\.api\.timeoutSeconds: must exceed the sandbox invoke's timeout \(85 s: the sandbox timeout of 70 s/)
    // Past the sandbox's own timeout is not enough: a cold start's init and the way back come on top.
    expect(() => parseInterpreterConfig({ ...minimal, api: { timeoutSeconds: 50 } })).toThrow(/timeoutSeconds: must exceed the sandbox invoke's timeout \(55 s/)
    expect(parseInterpreterConfig({ ...minimal, api: { timeoutSeconds: 56 } }).api.timeoutSeconds).toBe(56)
    // The longest block is the one the longest API timeout (900 s) still outwaits.
    expect(parseInterpreterConfig({ ...minimal, sandbox: { codeTimeoutMs: 874_000 }, api: { timeoutSeconds: 900 } }).sandbox.codeTimeoutMs).toBe(874_000)
    expect(() => parseInterpreterConfig({ ...minimal, sandbox: { codeTimeoutMs: 880_000 }, api: { timeoutSeconds: 900 } })).toThrow(/codeTimeoutMs: at most 874000/)
  })

  it('derives the sandbox timeout from the code timeout with a margin', () => {
    expect(sandboxTimeoutSeconds(30_000)).toBe(40)
    expect(sandboxTimeoutSeconds(30_001)).toBe(41)
  })

  it('says when the context key is missing', () => {
    expect(() => parseInterpreterConfig(undefined)).toThrow(/"interpreter" is missing/)
  })
})
