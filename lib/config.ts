import { z } from 'zod'
import { OrganizationId } from '../functions/contract/api'
import { AssistantId, InputMessage, ScheduleName, ToolSpec } from '../functions/contract/responses'
import { DEFAULT_PLANS } from '../functions/core/plans'

/** The cdk.json context key that holds the whole deployment configuration. */
export const CONFIG_CONTEXT_KEY = 'interpreter'

/** Values CloudWatch Logs accepts for retention (RetentionInDays). */
const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
  3288, 3653,
] as const

/** Seconds the sandbox Lambda gets beyond the code's own wall-clock limit (start-up, cleanup). */
export const SANDBOX_TIMEOUT_MARGIN_SECONDS = 10
/**
 * Lambda's init phase is capped at 10 s and is not part of the function timeout; an init that
 * runs over is retried inside the invoke, under the timeout (docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html).
 */
export const SANDBOX_COLD_INIT_SECONDS = 10
/** Placement, the request and up to 6 MB of answer on the wire. */
export const SANDBOX_INVOKE_OVERHEAD_SECONDS = 5
/** The longest API function timeout (900 s): the longest block is the one whose invoke it outwaits. */
const MAX_CODE_TIMEOUT_MS = (900 - 1 - SANDBOX_TIMEOUT_MARGIN_SECONDS - SANDBOX_COLD_INIT_SECONDS - SANDBOX_INVOKE_OVERHEAD_SECONDS) * 1_000

// A Bedrock model or inference-profile id. No '*' or '/': a wildcard here would widen the API role.
const bedrockModelId = z
  .string()
  .regex(/^[a-z0-9-]+(\.[a-z0-9-]+)+(:[a-z0-9-]+)*(:\d+)?$/i, 'not a Bedrock model or inference-profile id')

const sandboxSchema = z
  .object({
    memoryMb: z.number().int().min(128).max(10_240).default(2048),
    // /tmp holds the input files the runner fetches, the files the code writes and its scratch:
    // 2 GiB fits a 50 MB input plus outputs comfortably (Lambda bills storage above 512 MB).
    ephemeralStorageMb: z.number().int().min(512).max(10_240).default(2048),
    // null (default) = reserve nothing. Lambda keeps at least 100 of the account's concurrency
    // unreserved, so a new account (quota 100 or less) refuses any reservation at deploy time.
    // A number both guarantees and caps the sandbox's concurrency (and, with tenant isolation,
    // its tenant environments: 2,500 per 1,000 concurrency). See docs/deploy.md.
    reservedConcurrency: z.number().int().min(1).nullable().default(null),
    // The per-block wall-clock limit the runner enforces; the Lambda timeout is derived from it.
    codeTimeoutMs: z
      .number()
      .int()
      .min(1_000)
      .max(MAX_CODE_TIMEOUT_MS, `at most ${MAX_CODE_TIMEOUT_MS}: the API (at most 900 s) must outwait the block's limit + ${SANDBOX_TIMEOUT_MARGIN_SECONDS + SANDBOX_COLD_INIT_SECONDS + SANDBOX_INVOKE_OVERHEAD_SECONDS} s`)
      .default(30_000),
    tenantIsolation: z.boolean().default(true),
  })
  .strict()

/**
 * Memory of the API function (and of the worker and schedule functions, which run the same loop).
 * They mostly wait on the model and the sandbox, so memory is sized for the working set, not for
 * CPU (Lambda's CPU grows with memory: 1,769 MB = 1 vCPU). See docs/deploy.md "API memory".
 */
export const DEFAULT_API_MEMORY_MB = 512

const apiSchema = z
  .object({
    memoryMb: z.number().int().min(128).max(10_240).default(DEFAULT_API_MEMORY_MB),
    // Also the STREAM integration timeout, so at most API Gateway's 15 min streaming limit.
    timeoutSeconds: z.number().int().min(30).max(900).default(300),
    // The account-wide API Gateway CloudWatch Logs role (AWS::ApiGateway::Account) that stage
    // logging needs. false: the account already has one (it is a per-Region singleton).
    cloudWatchRole: z.boolean().default(true),
    // Source maps in the Node bundles plus NODE_OPTIONS=--enable-source-maps: readable stack
    // traces, paid for with map parsing at every cold start and on every error. Off by default.
    sourceMaps: z.boolean().default(false),
  })
  .strict()

const MIB = 1024 ** 2

/** An origin as browsers send it: scheme, host (optionally one leading `*.`), port; no path or slash. */
const corsOrigin = z
  .string()
  .regex(
    /^(\*|https?:\/\/(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:\d{1,5})?)$/,
    'an origin like https://app.example.com (scheme and host, optional port, no path or trailing slash), https://*.example.com, or *',
  )

const filesSchema = z
  .object({
    // One file's size limit (uploads and generated files). S3 takes at most 5 GiB in one PUT.
    maxFileBytes: z
      .number()
      .int()
      .min(MIB)
      .max(5 * 1024 ** 3)
      .default(512 * MIB),
    // Browser origins allowed to PUT/GET presigned URLs on the bucket; empty = no CORS rule.
    corsOrigins: z.array(corsOrigin).max(100).default([]),
  })
  .strict()

const throttlingSchema = z
  .object({
    rateLimit: z.number().positive().default(50),
    burstLimit: z.number().int().min(1).default(100),
  })
  .strict()

/** API Gateway usage plan of one organization plan: per-client throttle and a daily quota. */
const usagePlanSchema = z
  .object({
    rateLimit: z.number().positive(),
    burstLimit: z.number().int().min(1),
    requestsPerDay: z.number().int().min(1),
  })
  .strict()
export type UsagePlanConfig = z.infer<typeof usagePlanSchema>

/** Defaults for the functions' built-in plans (functions/core/plans.ts DEFAULT_PLANS). */
export const DEFAULT_USAGE_PLANS: Record<string, UsagePlanConfig> = {
  free: { rateLimit: 1, burstLimit: 2, requestsPerDay: 1_000 },
  standard: { rateLimit: 10, burstLimit: 20, requestsPerDay: 100_000 },
  enterprise: { rateLimit: 50, burstLimit: 100, requestsPerDay: 10_000_000 },
}

// Same names as the functions' plans; each becomes an API Gateway usage plan (and construct id).
const plansSchema = z
  .record(z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'a plan name: lowercase letters, digits, _ and -'), usagePlanSchema)
  .default(DEFAULT_USAGE_PLANS)
  .superRefine((plans, ctx) => {
    // The functions get no PLANS_JSON from the stack, so organizations have these plans.
    for (const name of Object.keys(DEFAULT_PLANS)) {
      if (!plans[name]) ctx.addIssue({ code: 'custom', path: [name], message: `missing: organizations on plan "${name}" need a usage plan` })
    }
  })

const CRON_FIELDS = [
  ['minutes', /^[0-9,\-*/]+$/],
  ['hours', /^[0-9,\-*/]+$/],
  ['day-of-month', /^[0-9,\-*/?LW]+$/],
  ['month', /^[0-9A-Za-z,\-*/]+$/],
  ['day-of-week', /^[0-9A-Za-z,\-*/?L#]+$/],
  ['year', /^[0-9,\-*/]+$/],
] as const

/**
 * Why an EventBridge Scheduler cron(...) or rate(...) expression is wrong, or undefined when it
 * looks right. Checks the shape Scheduler accepts (six cron fields, one of the day fields `?`;
 * rate with a whole positive value and a unit that agrees with it), not every calendar value.
 */
export function scheduleExpressionProblem(expression: string): string | undefined {
  const rate = /^rate\((.*)\)$/.exec(expression)
  if (rate) {
    const match = /^([1-9]\d*) (minute|minutes|hour|hours|day|days)$/.exec(rate[1]!)
    if (!match) return 'rate(...) takes a whole positive value and minute(s), hour(s) or day(s), e.g. rate(6 hours)'
    const singular = !match[2]!.endsWith('s')
    if ((match[1] === '1') !== singular) return `use ${match[1] === '1' ? 'the singular unit with 1' : 'the plural unit with a value above 1'}, e.g. rate(1 hour) or rate(6 hours)`
    return undefined
  }
  const cron = /^cron\((.*)\)$/.exec(expression)
  if (!cron) return 'must be cron(minutes hours day-of-month month day-of-week year) or rate(value unit)'
  const fields = cron[1]!.trim().split(/\s+/)
  if (fields.length !== 6) {
    return `cron(...) has 6 fields (minutes hours day-of-month month day-of-week year), got ${fields.length}`
  }
  for (const [i, [label, allowed]] of CRON_FIELDS.entries()) {
    if (!allowed.test(fields[i]!)) return `cron(...) field ${i + 1} (${label}) "${fields[i]}" has characters it does not allow`
  }
  if ((fields[2] === '?') === (fields[4] === '?')) {
    return 'cron(...) needs "?" in exactly one of day-of-month (field 3) and day-of-week (field 5)'
  }
  return undefined
}

function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name })
    return true
  } catch {
    return false
  }
}

const fileId = z.string().regex(/^file_[A-Za-z0-9_-]{1,64}$/, 'must look like file_<id>')

/**
 * One scheduled analysis: EventBridge Scheduler invokes the schedule function with the stored
 * request (the same fields POST /v1/responses takes) on this schedule. The request fields reuse
 * the API's own schemas, so a schedule that synthesizes is one the handler accepts.
 */
export const scheduleConfigSchema = z
  .object({
    name: ScheduleName,
    schedule: z.string().superRefine((expression, ctx) => {
      const problem = scheduleExpressionProblem(expression)
      if (problem) ctx.addIssue({ code: 'custom', message: problem })
    }),
    /** IANA time zone of a cron expression; UTC when omitted. */
    timezone: z.string().refine(isTimeZone, 'not an IANA time zone name (e.g. Europe/Berlin)').optional(),
    description: z.string().max(512).optional(),
    enabled: z.boolean().default(true),
    organizationId: OrganizationId,
    assistantId: AssistantId,
    inputs: z
      .array(InputMessage)
      .min(1, 'needs at least one message')
      .max(200)
      .refine((inputs) => inputs.at(-1)?.role === 'user', 'the last input must come from the user'),
    tools: z.array(ToolSpec).max(8).optional(),
    // Kept in the shape so a schedule can name them once requests carry files; POST /v1/responses
    // takes no file ids today, so a non-empty list fails at synth instead of being dropped.
    fileIds: z
      .array(fileId)
      .max(20)
      .refine((ids) => ids.length === 0, "not supported yet: a response request carries no file ids; set them on the assistant (its file_ids)")
      .optional(),
    /** EventBridge Scheduler's delivery retries (0-185) and how long it keeps trying. */
    retryAttempts: z.number().int().min(0).max(185).default(3),
    maxEventAgeSeconds: z.number().int().min(60).max(86_400).default(3_600),
  })
  .strict()
export type ScheduleConfig = z.infer<typeof scheduleConfigSchema>

/**
 * The request a schedule sends (its Scheduler input, and bin/schedule.ts's POST body): the
 * fields of POST /v1/responses plus the schedule's name (functions/handlers/schedule.ts).
 */
export function scheduleEvent(s: ScheduleConfig) {
  return {
    schedule: s.name,
    organization_id: s.organizationId,
    assistant_id: s.assistantId,
    inputs: s.inputs,
    ...(s.tools ? { tools: s.tools } : {}),
  }
}

export const schedulesSchema = z.array(scheduleConfigSchema).superRefine((schedules, ctx) => {
  const seen = new Set<string>()
  schedules.forEach((s, i) => {
    if (seen.has(s.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate schedule name "${s.name}"` })
    seen.add(s.name)
  })
})

export const interpreterConfigSchema = z
  .object({
    sandbox: sandboxSchema.prefault({}),
    api: apiSchema.prefault({}),
    files: filesSchema.prefault({}),
    bedrockModelIds: z.array(bedrockModelId).min(1),
    throttling: throttlingSchema.prefault({}),
    plans: plansSchema,
    logRetentionDays: z
      .number()
      .refine((d) => (LOG_RETENTION_DAYS as readonly number[]).includes(d), {
        message: `must be one of ${LOG_RETENTION_DAYS.join(', ')}`,
      })
      .default(30),
    schedules: schedulesSchema.default([]),
  })
  .strict()
  .superRefine((c, ctx) => {
    const invokeSeconds = sandboxInvokeTimeoutMs(c.sandbox.codeTimeoutMs) / 1000
    if (c.api.timeoutSeconds <= invokeSeconds) {
      ctx.addIssue({
        code: 'custom',
        path: ['api', 'timeoutSeconds'],
        message: `must exceed the sandbox invoke's timeout (${invokeSeconds} s: the sandbox timeout of ${sandboxTimeoutSeconds(c.sandbox.codeTimeoutMs)} s + a cold start's init + the way there and back), or the API gives up before a code block can finish`,
      })
    }
    if (c.files.maxFileBytes >= c.sandbox.ephemeralStorageMb * MIB) {
      ctx.addIssue({
        code: 'custom',
        path: ['files', 'maxFileBytes'],
        message: `must be below the sandbox's /tmp (sandbox.ephemeralStorageMb = ${c.sandbox.ephemeralStorageMb} MiB), or a file of that size cannot reach the code`,
      })
    }
  })

export type InterpreterConfig = z.infer<typeof interpreterConfigSchema>

/** Lambda timeout of the sandbox: the code's limit rounded up, plus a margin. */
export function sandboxTimeoutSeconds(codeTimeoutMs: number): number {
  return Math.ceil(codeTimeoutMs / 1_000) + SANDBOX_TIMEOUT_MARGIN_SECONDS
}


/**
 * How long the API waits for one sandbox invoke, in ms (the LambdaClient's whole-request timeout):
 *     sandboxTimeoutSeconds(codeTimeoutMs)   the sandbox function's timeout: Lambda has ended the
 *                                            invoke by then, whatever the runner did
 *   + SANDBOX_COLD_INIT_SECONDS (10)         a cold start's init phase, outside that timeout
 *   + SANDBOX_INVOKE_OVERHEAD_SECONDS (5)    the way there and back
 * = 55 s for the default 30 s block. Past it the invoke is given up and never retried (see
 * functions/handlers/deps.ts): the block may have run, and running it again would move the
 * session twice. The API function's own timeout must exceed it (checked by the config schema).
 */
export function sandboxInvokeTimeoutMs(codeTimeoutMs: number): number {
  return (sandboxTimeoutSeconds(codeTimeoutMs) + SANDBOX_COLD_INIT_SECONDS + SANDBOX_INVOKE_OVERHEAD_SECONDS) * 1000
}

/** Parses the `interpreter` context value; throws an error naming every bad key. */
export function parseInterpreterConfig(raw: unknown): InterpreterConfig {
  if (raw === undefined) {
    throw new Error(`cdk.json context key "${CONFIG_CONTEXT_KEY}" is missing`)
  }
  return parseOrThrow(interpreterConfigSchema, raw, [CONFIG_CONTEXT_KEY], `Invalid cdk.json context "${CONFIG_CONTEXT_KEY}"`)
}

/** Parses just a list of schedules (bin/schedule.ts); `where` names their source in errors. */
export function parseSchedules(raw: unknown, where: string, path: string[] = [CONFIG_CONTEXT_KEY, 'schedules']): ScheduleConfig[] {
  return parseOrThrow(schedulesSchema, raw, path, `Invalid schedules in ${where}`)
}

function parseOrThrow<T extends z.ZodType>(schema: T, raw: unknown, prefix: string[], title: string): z.infer<T> {
  const result = schema.safeParse(raw)
  if (result.success) return result.data
  const lines = result.error.issues.map((i) => `  - ${[...prefix, ...i.path.map(String)].join('.')}: ${i.message}`)
  throw new Error(`${title}:\n${lines.join('\n')}`)
}
