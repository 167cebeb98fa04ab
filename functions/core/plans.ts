import { z } from 'zod'

/** What an organization's plan allows. Plans come from configuration (PLANS_JSON). */
export const Plan = z
  .object({
    code_interpreter: z.boolean(),
    /** Code blocks one response may run; past it the response ends `incomplete`. */
    max_code_blocks_per_response: z.int().min(0).max(100),
    /** Code blocks per organization per UTC day, across responses and executions. */
    max_executions_per_day: z.int().min(0),
    /** A session unused this long expires (its state is deleted; callers get 410). */
    session_idle_days: z.int().min(1).max(30).default(7),
  })
  .strict()
export type Plan = z.infer<typeof Plan>

export const Plans = z.record(z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/), Plan)
export type Plans = z.infer<typeof Plans>

/** Ordered from least to most capable; the last is the default local plan. */
export const DEFAULT_PLANS: Plans = {
  free: { code_interpreter: false, max_code_blocks_per_response: 0, max_executions_per_day: 0, session_idle_days: 7 },
  standard: { code_interpreter: true, max_code_blocks_per_response: 5, max_executions_per_day: 1_000, session_idle_days: 7 },
  enterprise: { code_interpreter: true, max_code_blocks_per_response: 10, max_executions_per_day: 100_000, session_idle_days: 30 },
}

export function parsePlans(json: string | undefined): Plans {
  if (!json) return DEFAULT_PLANS
  let data: unknown
  try {
    data = JSON.parse(json)
  } catch (error) {
    throw new Error(`PLANS_JSON is not valid JSON: ${(error as Error).message}`)
  }
  const parsed = Plans.safeParse(data)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw new Error(`PLANS_JSON: ${issue.path.join('.')}: ${issue.message}`)
  }
  if (Object.keys(parsed.data).length === 0) throw new Error('PLANS_JSON must define at least one plan')
  return parsed.data
}

/** The most capable plan: the one that allows the most code blocks per response, then per day. */
export function mostCapablePlan(plans: Plans): string {
  return Object.entries(plans).sort(
    ([, a], [, b]) =>
      Number(b.code_interpreter) - Number(a.code_interpreter) ||
      b.max_code_blocks_per_response - a.max_code_blocks_per_response ||
      b.max_executions_per_day - a.max_executions_per_day,
  )[0]![0]
}
