import { cpus } from 'node:os'
import { resolve } from 'node:path'
import { z } from 'zod'

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
  /** As root: run worker i as the non-root uid base+i in the deployed posture (as inside Lambda). */
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

export type LocalConfig = ReturnType<typeof loadLocalConfig>

/** Local mode's configuration (README "Configuration"), with errors that name the variable. */
export function loadLocalConfig(env: Record<string, string | undefined> = process.env) {
  const parsed = LocalEnv.safeParse(env)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw new Error(`Configuration error: ${issue.path.join('.')} ${issue.message}`)
  }
  const c = parsed.data
  return Object.freeze({ ...c, DATA_DIR: resolve(c.DATA_DIR) })
}
