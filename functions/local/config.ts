import { cpus } from 'node:os'
import { resolve } from 'node:path'
import { z } from 'zod'
import type { Posture } from './worker-pool'

const LocalEnv = z.object({
  PORT: z.coerce.number().int().min(0).max(65_535).default(8787),
  /** Port of the local Lambda Invoke endpoint (0 = any free port). */
  LAMBDA_PORT: z.coerce.number().int().min(0).max(65_535).default(0),
  DATA_DIR: z.string().min(1).default('.data'),
  PYTHON: z.string().min(1).optional(),
  LOCAL_API_KEY: z.string().regex(/^[A-Za-z0-9_-]{16,200}$/, 'must be 16-200 characters of A-Z a-z 0-9 _ -').optional(),
  LOCAL_ORGANIZATION_ID: z.string().regex(/^org_[A-Za-z0-9_-]{1,64}$/, 'must look like org_<id>').default('org_local'),
  SANDBOX_WORKERS: z.coerce.number().int().min(1).max(64).default(cpus().length),
  SANDBOX_QUEUE_LIMIT: z.coerce.number().int().min(0).max(10_000).default(64),
  SANDBOX_SLOT_UID_BASE: z.coerce.number().int().min(1000).max(4_000_000_000).default(61_000),
  /**
   * How the workers run: root (as root, blocks under per-slot uids, namespaces), deployed (one
   * non-root uid per worker with every layer required: stricter than Lambda), lambda (each worker in an emulated
   * Lambda environment, driven through the Runtime API). auto or unset: deployed when
   * SANDBOX_WORKER_UID_BASE is set, else root as root, else deployed (as the server's own uid).
   */
  SANDBOX_POSTURE: z
    .enum(['auto', 'root', 'deployed', 'lambda'], { error: 'must be root, deployed or lambda (or auto)' })
    .default('auto'),
  /** deployed and lambda postures, as root: worker i runs as the non-root uid base+i. */
  SANDBOX_WORKER_UID_BASE: z.coerce.number().int().min(1000).max(4_000_000_000).optional(),
  CODE_TIMEOUT_MS: z.coerce.number().int().min(100).max(900_000).default(30_000),
  /** Plan of LOCAL_ORGANIZATION_ID (and of organizations made by issueKey); default: the most capable. */
  LOCAL_PLAN: z.string().optional(),
  PLANS_JSON: z.string().optional(),
  MAX_CODE_BLOCKS_PER_RESPONSE: z.string().optional(),
  RESPONSE_DEADLINE_MS: z.string().optional(),
  KEY_CACHE_TTL_MS: z.string().optional(),
  USAGE_RESERVATION_BATCH: z.string().optional(),
  FILE_MAX_BYTES: z.string().optional(),
})

/** Lambda posture: worker i runs as uid 62000 + i unless SANDBOX_WORKER_UID_BASE says otherwise. */
export const DEFAULT_LAMBDA_UID_BASE = 62_000

export type LocalConfig = ReturnType<typeof loadLocalConfig>

/** Local mode's configuration (README "Configuration"), with errors that name the variable. */
export function loadLocalConfig(
  env: Record<string, string | undefined> = process.env,
  { root = process.geteuid?.() === 0 }: { root?: boolean } = {},
) {
  const parsed = LocalEnv.safeParse(env)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw new Error(`Configuration error: ${issue.path.join('.')} ${issue.message}`)
  }
  const c = parsed.data
  const uidBase = c.SANDBOX_WORKER_UID_BASE
  const posture: Posture =
    c.SANDBOX_POSTURE !== 'auto' ? c.SANDBOX_POSTURE : uidBase === undefined && root ? 'root' : 'deployed'
  if (posture === 'root' && uidBase !== undefined) {
    throw new Error(
      'Configuration error: SANDBOX_WORKER_UID_BASE runs each worker under a uid of its own, which SANDBOX_POSTURE=root does not (use deployed or lambda, or unset it)',
    )
  }
  return Object.freeze({
    ...c,
    DATA_DIR: resolve(c.DATA_DIR),
    SANDBOX_POSTURE: posture,
    SANDBOX_WORKER_UID_BASE: posture === 'lambda' ? (uidBase ?? DEFAULT_LAMBDA_UID_BASE) : uidBase,
  })
}
