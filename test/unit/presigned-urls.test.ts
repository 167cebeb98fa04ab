import { describe, expect, it } from 'vitest'
import { loadApiConfig, sandboxInvokeTimeoutMs } from '../../functions/config'
import type { BlobStore } from '../../functions/core/ports'
import { sandboxUrlLifetime, UploadSlots, Workspace, type WorkspaceDeps } from '../../functions/core/workspace'

const BASE = { SANDBOX_FUNCTION_NAME: 'sandbox', TABLE_NAME: 't', BUCKET_NAME: 'b' }

/** A blob store that signs nothing: it records what was asked and answers with the asked lifetime. */
function fakeBlobs(nowSeconds: () => number) {
  const asked: { method: string; key: string; seconds: number; minSeconds?: number }[] = []
  const deleted: string[][] = []
  const blobs = {
    presign: async (method: string, key: string, seconds: number, options?: { minSeconds?: number }) => {
      asked.push({ method, key, seconds, minSeconds: options?.minSeconds })
      return { url: `https://bucket/${key}?n=${asked.length}`, expiresAt: nowSeconds() + seconds }
    },
    delete: async (keys: string[]) => void deleted.push(keys),
  }
  return { blobs: blobs as unknown as BlobStore, asked, deleted }
}

describe('PRESIGNED_URL_SECONDS', () => {
  it('defaults to 15 minutes and accepts up to SigV4\'s seven days', () => {
    expect(loadApiConfig(BASE).presignedUrlSeconds).toBe(900)
    expect(loadApiConfig({ ...BASE, PRESIGNED_URL_SECONDS: '604800' }).presignedUrlSeconds).toBe(604_800)
  })

  it('refuses a lifetime no SigV4 URL can have, or one too short to use, naming the key', () => {
    expect(() => loadApiConfig({ ...BASE, PRESIGNED_URL_SECONDS: '604801' })).toThrow(/PRESIGNED_URL_SECONDS: must be at most 604800/)
    expect(() => loadApiConfig({ ...BASE, PRESIGNED_URL_SECONDS: '59' })).toThrow(/PRESIGNED_URL_SECONDS/)
    expect(() => loadApiConfig({ ...BASE, PRESIGNED_URL_SECONDS: '1.5' })).toThrow(/PRESIGNED_URL_SECONDS/)
  })
})

describe('URLs handed to the sandbox', () => {
  it('live one whole invoke plus five minutes of reuse', () => {
    expect(sandboxUrlLifetime(sandboxInvokeTimeoutMs(30_000))).toEqual({ seconds: 355, minSeconds: 55 })
  })

  it('an upload slot is offered again only while a whole invoke still fits in what is left of it', async () => {
    let now = 1_000_000
    const { blobs, asked } = fakeBlobs(() => Math.floor(now / 1000))
    const slots = new UploadSlots(blobs, { seconds: 355, minSeconds: 55 }, () => now)
    const [first] = await slots.take('org_a', 1)
    expect(asked).toEqual([{ method: 'PUT', key: first!.key, seconds: 355, minSeconds: 55 }])
    slots.giveBack('org_a', [first!])
    now += 299_000 // 56 s left
    expect(await slots.take('org_a', 1)).toEqual([first])
    slots.giveBack('org_a', [first!])
    now += 2_000 // 54 s left: too little for a block
    const [fresh] = await slots.take('org_a', 1)
    expect(fresh!.key).not.toBe(first!.key)
  })

  it('slots of a block whose result never came back are deleted, not offered again', async () => {
    const { blobs, deleted } = fakeBlobs(() => Math.floor(Date.now() / 1000))
    const slots = new UploadSlots(blobs, { seconds: 355, minSeconds: 55 })
    const deps = { files: {}, blobs, sessions: {}, clock: { now: () => new Date() }, slots } as unknown as WorkspaceDeps
    const workspace = await Workspace.open(deps, { organizationId: 'org_a', inputs: [], source: {} })
    const payload = await workspace.payload(false)
    expect(payload.uploads).toHaveLength(4)
    await workspace.release() // the invoke failed or timed out: settle() never ran
    expect(deleted).toHaveLength(1)
    expect(deleted[0]!.map((k) => `https://bucket/${k}`)).toEqual(payload.uploads!.map((u) => u.split('?')[0]))
    // The next block gets new slots, never the ones the runner may have written to.
    const next = await slots.take('org_a', 4)
    expect(next.map((s) => s.key)).not.toContain(deleted[0]![0])
  })
})
