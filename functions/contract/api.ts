/** Public request and response shapes of the HTTP API (names follow the product brief). */
import { z } from 'zod'
import { MAX_CODE_CHARS, OutputItem } from './sandbox'

export const OrganizationId = z.string().regex(/^org_[A-Za-z0-9_-]{1,64}$/, 'must look like org_<id>')

export const ExecutionRequest = z
  .object({
    organization_id: OrganizationId,
    code: z.string().min(1, 'must not be empty').max(MAX_CODE_CHARS, `must be at most ${MAX_CODE_CHARS} characters`),
    /** Lower the per-block time limit for this execution (never above the configured limit). */
    timeout_ms: z.int().min(100).max(900_000).optional(),
    /** Keep Python state between executions that name the same session. */
    session_id: z.string().regex(/^sess_[A-Za-z0-9_-]{1,64}$/, 'must look like sess_<id>').optional(),
  })
  .strict()
export type ExecutionRequest = z.infer<typeof ExecutionRequest>

export const Execution = z.object({
  id: z.string(),
  object: z.literal('execution'),
  organization_id: z.string(),
  status: z.enum(['completed', 'failed', 'timed_out']),
  code: z.string(),
  outputs: z.array(OutputItem),
  output_dropped_bytes: z.int().min(0),
  duration_ms: z.number(),
  created_at: z.int(),
  session_id: z.string().optional(),
})
export type Execution = z.infer<typeof Execution>
