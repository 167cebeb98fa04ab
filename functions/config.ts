import { z } from 'zod'
import { mostCapablePlan, parsePlans, type Plans } from './core/plans'

/** The sandbox invoke's timeout (its arithmetic is in lib/config.ts, which the synth checks against). */
export { sandboxInvokeTimeoutMs } from '../lib/config'

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1')

/** The API function's configuration, read once from the environment at cold start. */
const ApiEnv = z.object({
  SANDBOX_FUNCTION_NAME: z.string().min(1),
  SANDBOX_TENANT_ISOLATION: bool.default(true),
  TABLE_NAME: z.string().min(1),
  CODE_TIMEOUT_MS: z.coerce.number().int().min(100).max(900_000).default(30_000),
  /** Python version the sandbox runs, as the model is told. */
  SANDBOX_PYTHON_VERSION: z.string().regex(/^3\.\d+$/).default('3.13'),
  MAX_CODE_BLOCKS_PER_RESPONSE: z.coerce.number().int().min(0).max(100).default(10),
  RESPONSE_DEADLINE_MS: z.coerce.number().int().min(1_000).max(900_000).default(240_000),
  PLANS_JSON: z.string().optional(),
  /** Plan of an organization without a record. */
  DEFAULT_PLAN: z.string().optional(),
  /** The worker function that runs background responses (asynchronous invoke). */
  WORKER_FUNCTION_NAME: z.string().min(1).optional(),
  /** How long a known API key and an organization's plan are kept in memory. */
  KEY_CACHE_TTL_MS: z.coerce.number().int().min(0).max(3_600_000).default(30_000),
  /** Code blocks reserved from the daily counter at a time. */
  USAGE_RESERVATION_BATCH: z.coerce.number().int().min(1).max(1000).default(10),
  /** The bucket for file bytes and large session state. */
  BUCKET_NAME: z.string().min(1),
  /** Largest file an upload (presigned) may register. */
  FILE_MAX_BYTES: z.coerce.number().int().min(1024 * 1024).max(5 * 1024 ** 3).default(512 * 1024 * 1024),
  /**
   * How long presigned URLs handed to clients (upload URLs, large downloads) live at most. 15
   * minutes: Lambda's role credentials, which sign them, carry no expiry the SDK can read, and
   * a URL dies with the credentials that signed it. Raise it only with a longer-lived signer (an
   * IAM user's keys: at most 7 days, SigV4's limit); where the SDK knows the credentials' expiry,
   * URLs end with them and `expires_at` says so.
   */
  PRESIGNED_URL_SECONDS: z.coerce.number().int().min(60).max(604_800, 'must be at most 604800 (7 days, the longest a SigV4 presigned URL lives)').default(900),
})

export type ApiConfig = Readonly<{
  sandboxFunctionName: string
  tenantIsolation: boolean
  tableName: string
  codeTimeoutMs: number
  pythonVersion: string
  maxCodeBlocksPerResponse: number
  responseDeadlineMs: number
  plans: Plans
  defaultPlan: string
  keyCacheTtlMs: number
  usageReservationBatch: number
  workerFunctionName?: string
  bucketName: string
  fileMaxBytes: number
  presignedUrlSeconds: number
}>

export function loadApiConfig(env: Record<string, string | undefined> = process.env): ApiConfig {
  const parsed = ApiEnv.safeParse(env)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new Error(`Configuration error: ${issue?.path.join('.')}: ${issue?.message}`)
  }
  const e = parsed.data
  const plans = parsePlans(e.PLANS_JSON)
  const defaultPlan = e.DEFAULT_PLAN ?? (plans.free ? 'free' : mostCapablePlan(plans))
  if (!plans[defaultPlan]) throw new Error(`Configuration error: DEFAULT_PLAN "${defaultPlan}" is not a plan in PLANS_JSON`)
  return Object.freeze({
    sandboxFunctionName: e.SANDBOX_FUNCTION_NAME,
    tenantIsolation: e.SANDBOX_TENANT_ISOLATION,
    tableName: e.TABLE_NAME,
    codeTimeoutMs: e.CODE_TIMEOUT_MS,
    pythonVersion: e.SANDBOX_PYTHON_VERSION,
    maxCodeBlocksPerResponse: e.MAX_CODE_BLOCKS_PER_RESPONSE,
    responseDeadlineMs: e.RESPONSE_DEADLINE_MS,
    plans,
    defaultPlan,
    keyCacheTtlMs: e.KEY_CACHE_TTL_MS,
    usageReservationBatch: e.USAGE_RESERVATION_BATCH,
    workerFunctionName: e.WORKER_FUNCTION_NAME,
    bucketName: e.BUCKET_NAME,
    fileMaxBytes: e.FILE_MAX_BYTES,
    presignedUrlSeconds: e.PRESIGNED_URL_SECONDS,
  })
}
