import { z } from 'zod'

/** The cdk.json context key that holds the whole deployment configuration. */
export const CONFIG_CONTEXT_KEY = 'interpreter'

/** Values CloudWatch Logs accepts for retention (RetentionInDays). */
const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
  3288, 3653,
] as const

/** Seconds the sandbox Lambda gets beyond the code's own wall-clock limit (start-up, cleanup). */
export const SANDBOX_TIMEOUT_MARGIN_SECONDS = 10

// A Bedrock model or inference-profile id. No '*' or '/': a wildcard here would widen the API role.
const bedrockModelId = z
  .string()
  .regex(/^[a-z0-9-]+(\.[a-z0-9-]+)+(:[a-z0-9-]+)*(:\d+)?$/i, 'not a Bedrock model or inference-profile id')

const sandboxSchema = z
  .object({
    memoryMb: z.number().int().min(128).max(10_240).default(2048),
    ephemeralStorageMb: z.number().int().min(512).max(10_240).default(1024),
    // null = reserve nothing: new accounts with a low concurrency quota cannot reserve any.
    reservedConcurrency: z.number().int().min(1).nullable().default(20),
    // The per-block wall-clock limit the runner enforces; the Lambda timeout is derived from it.
    codeTimeoutMs: z
      .number()
      .int()
      .min(1_000)
      .max((900 - SANDBOX_TIMEOUT_MARGIN_SECONDS) * 1_000)
      .default(30_000),
    tenantIsolation: z.boolean().default(true),
  })
  .strict()

const apiSchema = z
  .object({
    memoryMb: z.number().int().min(128).max(10_240).default(1024),
    // Also the STREAM integration timeout, so at most API Gateway's 15 min streaming limit.
    timeoutSeconds: z.number().int().min(30).max(900).default(300),
  })
  .strict()

const throttlingSchema = z
  .object({
    rateLimit: z.number().positive().default(50),
    burstLimit: z.number().int().min(1).default(100),
  })
  .strict()

export const interpreterConfigSchema = z
  .object({
    sandbox: sandboxSchema.prefault({}),
    api: apiSchema.prefault({}),
    bedrockModelIds: z.array(bedrockModelId).min(1),
    throttling: throttlingSchema.prefault({}),
    logRetentionDays: z
      .number()
      .refine((d) => (LOG_RETENTION_DAYS as readonly number[]).includes(d), {
        message: `must be one of ${LOG_RETENTION_DAYS.join(', ')}`,
      })
      .default(30),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.api.timeoutSeconds <= sandboxTimeoutSeconds(c.sandbox.codeTimeoutMs)) {
      ctx.addIssue({
        code: 'custom',
        path: ['api', 'timeoutSeconds'],
        message: `must exceed the sandbox timeout (${sandboxTimeoutSeconds(c.sandbox.codeTimeoutMs)} s), or the API gives up before a code block can finish`,
      })
    }
  })

export type InterpreterConfig = z.infer<typeof interpreterConfigSchema>

/** Lambda timeout of the sandbox: the code's limit rounded up, plus a margin. */
export function sandboxTimeoutSeconds(codeTimeoutMs: number): number {
  return Math.ceil(codeTimeoutMs / 1_000) + SANDBOX_TIMEOUT_MARGIN_SECONDS
}

/** Parses the `interpreter` context value; throws an error naming every bad key. */
export function parseInterpreterConfig(raw: unknown): InterpreterConfig {
  if (raw === undefined) {
    throw new Error(`cdk.json context key "${CONFIG_CONTEXT_KEY}" is missing`)
  }
  const result = interpreterConfigSchema.safeParse(raw)
  if (result.success) return result.data
  const lines = result.error.issues.map(
    (i) => `  - ${[CONFIG_CONTEXT_KEY, ...i.path.map(String)].join('.')}: ${i.message}`,
  )
  throw new Error(`Invalid cdk.json context "${CONFIG_CONTEXT_KEY}":\n${lines.join('\n')}`)
}
