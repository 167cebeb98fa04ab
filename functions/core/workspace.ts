/**
 * What travels with each code block besides the code: the files the code can read, the
 * session's Python state, and upload slots for what is too large to come back inline; and,
 * after the block, turning what the sandbox returned into stored files and a new state.
 *
 * Small things travel inside the invocation (Lambda's 6 MB each way); large ones through
 * presigned URLs that only the trusted runner uses. The sandbox stays stateless.
 */
import type { FileObject, PublicOutputItem } from '../contract/files'
import type { InputFile, SandboxPayload, SandboxResult, StateIn } from '../contract/sandbox'
import { fileContentMissing, SandboxProtocolError } from './errors'
import { type FilesDeps, type StoredFile, fileKey, mediaType, storeGenerated } from './files'
import { newId } from './ids'
import type { BlobStore, Clock } from './ports'
import { claimSession, releaseSession, stateKeys } from './sessions'
import type { FileStore, SessionRecord, SessionStore, StatePartRecord } from './stores'

/** A file travels inline while it is at most this large and the block's inline total allows. */
const INLINE_FILE_BYTES = 1024 * 1024
const INLINE_FILES_TOTAL = 3 * 1024 * 1024
/** A state part stays in the session record while small; the record keeps at most this inline. */
const INLINE_PART_CHARS = 96_000
const INLINE_STATE_CHARS = 200_000
/**
 * How long the URLs handed to the runner (inputs, state parts, upload slots) live: one whole
 * sandbox invoke must fit in what remains of a URL when it is handed out (`minSeconds`), and a
 * URL signed ahead is handed out again for up to SANDBOX_URL_REUSE_SECONDS. Short on purpose: a
 * block may read its own invoke's event (docs/security.md), and a URL ends with the credentials
 * that signed it anyway.
 */
export interface SandboxUrlLifetime {
  seconds: number
  minSeconds: number
}
export const SANDBOX_URL_REUSE_SECONDS = 300
export function sandboxUrlLifetime(invokeTimeoutMs: number): SandboxUrlLifetime {
  const minSeconds = Math.ceil(invokeTimeoutMs / 1000)
  return { seconds: minSeconds + SANDBOX_URL_REUSE_SECONDS, minSeconds }
}
/** Images up to this size are also inlined in the output item as a data: URL. */
export const INLINE_IMAGE_BYTES = 48 * 1024
/** Files a session carries from block to block (with a request's own, within the sandbox's 100). */
export const MAX_SESSION_FILES = 50
/** Upload slots offered per block: large outputs and new large state parts. */
export const SLOTS_PER_BLOCK = 4

export interface Slot {
  id: string
  key: string
  url: string
  /** When the URL stops working (unix seconds). */
  expiresAt: number
}

/**
 * Presigned PUT URLs for fresh keys, signed ahead and reused while unused: a block that
 * uploads nothing (most blocks) costs no signing. Slots never cross organizations.
 */
export class UploadSlots {
  private readonly pools = new Map<string, Slot[]>()

  constructor(
    private readonly blobs: BlobStore,
    /** Also the lifetime of the other URLs handed to the runner (Workspace.payload). */
    readonly lifetime: SandboxUrlLifetime,
    private readonly now: () => number = Date.now,
  ) {}

  async take(organizationId: string, n: number): Promise<Slot[]> {
    // Kept only while a whole invoke still fits in what is left of the URL.
    const fresh = this.now() / 1000 + this.lifetime.minSeconds
    const pool = (this.pools.get(organizationId) ?? []).filter((s) => s.expiresAt >= fresh)
    const taken = pool.splice(0, n)
    this.pools.set(organizationId, pool)
    while (taken.length < n) {
      const id = newId('file')
      const key = fileKey(organizationId, id)
      const signed = await this.blobs.presign('PUT', key, this.lifetime.seconds, { minSeconds: this.lifetime.minSeconds })
      taken.push({ id, key, url: signed.url, expiresAt: signed.expiresAt })
    }
    return taken
  }

  giveBack(organizationId: string, slots: Slot[]): void {
    if (!slots.length) return
    const pool = this.pools.get(organizationId) ?? []
    pool.push(...slots)
    this.pools.set(organizationId, pool.slice(-4 * SLOTS_PER_BLOCK))
  }
}

export interface WorkspaceDeps {
  files: FileStore
  blobs: BlobStore
  sessions: SessionStore
  clock: Clock
  slots: UploadSlots
}

export interface WorkspaceInit {
  organizationId: string
  /** Files the request (and its assistant) named: read-only to the code. */
  inputs: StoredFile[]
  /** The session whose state and generated files the blocks share (claimed while open). */
  session?: SessionRecord
  /** The session does not exist yet: it is created, claimed. */
  newSession?: boolean
  /**
   * False when nobody can know a new session's id before this request ends (a plain JSON
   * answer): it is then created only when saved, one write fewer on the way.
   */
  claimNew?: boolean
  /** How long the claim lasts if this request dies without releasing it. */
  claimSeconds?: number
  /** The claim's name; the same name may take the session again (a reservation's run). */
  holder?: string
  /** Recorded on generated files. */
  source: FileObject['source']
}

/** The name a file gets in the working directory (the sandbox takes no paths). */
const placedName = (filename: string) => filename.replaceAll('/', '_').replace(/^\.+/, '_')

export class Workspace {
  private readonly sessionFiles = new Map<string, StoredFile>()
  private readonly garbage = new Set<string>()
  /** Bytes of small files this request's blocks wrote, by file id. */
  private readonly written = new Map<string, Uint8Array>()
  private slots: Slot[] = []
  private readonly holder: string
  private released = false
  /** A new session created only when saved. */
  private unclaimedNew = false
  /** State keys the session had when this request took it. */
  private readonly initialKeys = new Set<string>()

  private constructor(
    private readonly deps: WorkspaceDeps,
    private readonly init: WorkspaceInit,
  ) {
    this.holder = init.holder ?? newId('claim')
  }

  /**
   * Opens the workspace; with a session, claims it first (one request at a time, else 409
   * session_busy) and works on the session as stored at that moment.
   */
  static async open(deps: WorkspaceDeps, init: WorkspaceInit): Promise<Workspace> {
    const ws = new Workspace(deps, init)
    if (init.session && init.newSession && init.claimNew === false) {
      ws.unclaimedNew = true
    } else if (init.session) {
      init.session = await claimSession(deps, init.session, ws.holder, init.claimSeconds ?? 900, init.newSession === true)
      for (const key of stateKeys(init.session)) ws.initialKeys.add(key)
    }
    const generated = Object.entries(init.session?.files ?? {})
    const records = await Promise.all(generated.map(([, id]) => deps.files.getFile(init.organizationId, id)))
    generated.forEach(([name], i) => {
      const file = records[i]
      if (file) ws.sessionFiles.set(name, file)
      else delete init.session!.files[name] // deleted through the files API meanwhile
    })
    return ws
  }

  /** The files the code finds in its working directory, for the model's instructions. */
  get visibleFiles(): { name: string; bytes: number; mime_type: string }[] {
    return this.placed().map(({ file }) => ({ name: placedName(file.filename), bytes: file.bytes, mime_type: file.mime_type }))
  }

  private placed(): { file: StoredFile; writable: boolean }[] {
    const explicit = new Set(this.init.inputs.map((f) => placedName(f.filename)))
    return [
      ...this.init.inputs.map((file) => ({ file, writable: false })),
      ...[...this.sessionFiles.entries()].filter(([name]) => !explicit.has(name)).map(([, file]) => ({ file, writable: true })),
    ]
  }

  /** The newest file of each name joins the session; past the cap the oldest names leave it (their files stay). */
  private keepSessionFile(name: string, file: StoredFile): void {
    const files = this.init.session!.files
    this.sessionFiles.delete(name)
    delete files[name]
    this.sessionFiles.set(name, file)
    files[name] = file.id
    for (const oldest of this.sessionFiles.keys()) {
      if (this.sessionFiles.size <= MAX_SESSION_FILES) break
      this.sessionFiles.delete(oldest)
      delete files[oldest]
    }
  }

  /** The payload fields for the next block. */
  async payload(wantState: boolean): Promise<Pick<SandboxPayload, 'files' | 'state' | 'uploads' | 'want_state'>> {
    const { blobs } = this.deps
    const { seconds, minSeconds } = this.deps.slots.lifetime
    const presignGet = async (key: string) => (await blobs.presign('GET', key, seconds, { minSeconds })).url
    let inline = INLINE_FILES_TOTAL
    const files = await Promise.all(
      this.placed().map(async ({ file, writable }): Promise<InputFile> => {
        const base = { name: placedName(file.filename), bytes: file.bytes, ...(writable ? { writable } : {}) }
        if (file.bytes <= INLINE_FILE_BYTES && file.bytes <= inline) {
          inline -= file.bytes
          const data = this.written.get(file.id) ?? (await blobs.get(file.key))
          if (!data) throw fileContentMissing(file.id)
          return { ...base, data: Buffer.from(data).toString('base64') }
        }
        return { ...base, url: await presignGet(file.key) }
      }),
    )
    const parts = wantState ? this.init.session?.state?.parts : undefined
    const state: StateIn | undefined = parts?.length
      ? {
          parts: await Promise.all(
            parts.map(async (p) =>
              p.data !== undefined
                ? { sha256: p.sha256, bytes: p.bytes, data: p.data }
                : { sha256: p.sha256, bytes: p.bytes, url: await presignGet(p.key!) },
            ),
          ),
        }
      : undefined
    this.slots = await this.deps.slots.take(this.init.organizationId, SLOTS_PER_BLOCK)
    return {
      ...(files.length ? { files } : {}),
      ...(state ? { state } : {}),
      ...(wantState ? { want_state: true } : {}),
      uploads: this.slots.map((s) => s.url),
    }
  }

  /**
   * After a block: every image and file becomes a stored file (an ordinary file id), files
   * join the session's files, and the new state replaces the old. Returns the public outputs.
   */
  async settle(result: SandboxResult, source: FileObject['source'] = {}): Promise<PublicOutputItem[]> {
    const { blobs } = this.deps
    const org = this.init.organizationId
    const slots = this.slots
    this.slots = []
    const used = new Set<number>()
    const slotAt = (i: number) => {
      const slot = slots[i]
      if (!slot || used.has(i)) throw new SandboxProtocolError(`the sandbox named upload slot ${i}, which it was not given or used twice`)
      used.add(i)
      return slot
    }
    const notices: PublicOutputItem[] = []
    const kept: (StoredFile | undefined)[] = []
    let images = 0
    const fileDeps: Pick<FilesDeps, 'files' | 'blobs' | 'clock'> = this.deps
    try {
      const outputs = await Promise.all(
        result.outputs.map(async (o, i): Promise<PublicOutputItem | undefined> => {
          if (o.type === 'text' || o.type === 'error') return o
          const filename = o.type === 'image' ? `image-${++images}.png` : o.filename
          const mimeType = o.type === 'image' ? 'image/png' : mediaType(o.filename, o.mime_type)
          const origin = { ...this.init.source, ...source }
          let stored: StoredFile
          if (o.data !== undefined) {
            const data = Buffer.from(o.data, 'base64')
            stored = await storeGenerated(fileDeps, org, { filename, mimeType, purposeSource: origin, data })
            // A later block of this request gets it inline: no fetching back what was just stored.
            if (o.type === 'file' && data.length <= INLINE_FILE_BYTES) this.written.set(stored.id, data)
          } else if (o.slot !== undefined) {
            const slot = slotAt(o.slot)
            // The object's real size, not the sandbox's word for it.
            const head = await blobs.head(slot.key)
            if (!head) {
              notices.push({ type: 'text', source: 'sandbox', text: `[${filename} could not be stored: its upload did not arrive]` })
              return undefined
            }
            stored = await storeGenerated(fileDeps, org, { id: slot.id, filename, mimeType, purposeSource: origin, uploadedBytes: head.bytes })
          } else {
            throw new SandboxProtocolError(`the sandbox returned ${o.type === 'file' ? o.filename : 'an image'} with neither data nor slot`)
          }
          if (o.type === 'image') {
            const url = o.data !== undefined && stored.bytes <= INLINE_IMAGE_BYTES ? `data:image/png;base64,${o.data}` : undefined
            return { type: 'image', file_id: stored.id, mime_type: stored.mime_type, bytes: stored.bytes, ...(url ? { url } : {}) }
          }
          if (this.init.session && !o.filename.includes('/')) kept[i] = stored
          return { type: 'file', file_id: stored.id, filename: stored.filename, mime_type: stored.mime_type, bytes: stored.bytes }
        }),
      )
      // In the order the block wrote them, not the order their uploads finished.
      for (const file of kept) if (file) this.keepSessionFile(placedName(file.filename), file)
      if (result.state && this.init.session) {
        const notice = await this.settleState(result.state, slotAt)
        if (notice) notices.push({ type: 'text', source: 'sandbox', text: notice })
      }
      return [...outputs.filter((o): o is PublicOutputItem => o !== undefined), ...notices]
    } finally {
      this.deps.slots.giveBack(org, slots.filter((_, i) => !used.has(i)))
    }
  }

  private async settleState(state: NonNullable<SandboxResult['state']>, slotAt: (i: number) => Slot): Promise<string | undefined> {
    const session = this.init.session!
    const previous = new Map((session.state?.parts ?? []).map((p) => [p.sha256, p]))
    const parts: StatePartRecord[] = []
    for (const p of state.parts) {
      if (p.data !== undefined) parts.push({ sha256: p.sha256, bytes: p.bytes, data: p.data })
      else if (p.slot !== undefined) parts.push({ sha256: p.sha256, bytes: p.bytes, key: slotAt(p.slot).key })
      else {
        const old = previous.get(p.sha256)
        if (!old) return '[the Python state was not kept: the sandbox referred to a part it was not given]'
        parts.push(old)
      }
    }
    // The session record holds small parts itself; the rest go to the blob store.
    let inlineChars = 0
    for (const p of [...parts].sort((a, b) => (a.data?.length ?? 0) - (b.data?.length ?? 0))) {
      if (p.data === undefined) continue
      if (p.data.length <= INLINE_PART_CHARS && inlineChars + p.data.length <= INLINE_STATE_CHARS) {
        inlineChars += p.data.length
        continue
      }
      const key = `state/${session.organization_id}/${session.id}/${newId('part')}`
      await this.deps.blobs.put(key, Buffer.from(p.data, 'base64'))
      p.key = key
      delete p.data
    }
    const kept = new Set(parts.flatMap((p) => (p.key ? [p.key] : [])))
    for (const old of session.state?.parts ?? []) if (old.key && !kept.has(old.key)) this.garbage.add(old.key)
    for (const key of kept) this.garbage.delete(key)
    session.state = { parts }
    return undefined
  }

  /**
   * Saves the session (its state, its files, the time of use), releases it, and deletes the
   * state it replaced. False when the claim was lost meanwhile (the session was deleted, or
   * this request outlived its claim and another took the session): nothing is saved then.
   */
  async persist(idleDays: number): Promise<boolean> {
    await this.dropUnsettledSlots()
    const session = this.init.session
    if (!session || this.released) return true
    this.released = true
    session.last_active_at = Math.floor(this.deps.clock.now().getTime() / 1000)
    session.idle_seconds = idleDays * 86_400
    const saved = await this.deps.sessions.putSession(session, this.unclaimedNew ? { create: true } : { holder: this.holder })
    // Lost: what this request stored is named by nothing; kept: what it replaced is not.
    const unused = saved ? [...this.garbage] : stateKeys(session).filter((k) => !this.initialKeys.has(k))
    if (unused.length) await this.deps.blobs.delete(unused).catch(() => undefined)
    this.garbage.clear()
    return saved
  }

  /**
   * Upload slots handed to a block whose result never came back (the invoke failed or timed
   * out): the runner may have stored objects there that no file names, so they are deleted,
   * never offered again.
   */
  private async dropUnsettledSlots(): Promise<void> {
    const keys = this.slots.map((s) => s.key)
    this.slots = []
    if (keys.length) await this.deps.blobs.delete(keys).catch(() => undefined)
  }

  /** Releases the session without saving (a request that failed before it could persist). */
  async release(): Promise<void> {
    await this.dropUnsettledSlots()
    const session = this.init.session
    if (!session || this.released) return
    this.released = true
    if (!this.unclaimedNew) await releaseSession(this.deps.sessions, session.organization_id, session.id, this.holder)
    const unused = stateKeys(session).filter((k) => !this.initialKeys.has(k))
    if (unused.length) await this.deps.blobs.delete(unused).catch(() => undefined)
  }
}
