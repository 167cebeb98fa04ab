/** Public request and response shapes of the HTTP API (names follow the product brief). */
import { z } from 'zod'
import { FileIds, PublicOutputItem } from './files'
import { OrganizationId, SessionId } from './ids'
import { MAX_CODE_CHARS } from './sandbox'

export { OrganizationId }

export const ExecutionRequest = z
  .object({
    organization_id: OrganizationId,
    code: z.string().min(1, 'must not be empty').max(MAX_CODE_CHARS, `must be at most ${MAX_CODE_CHARS} characters`),
    /** Lower the per-block time limit for this execution (never above the configured limit). */
    timeout_ms: z.int().min(100).max(900_000).optional(),
    /** Keep Python state (and generated files) between executions that name the same session (POST /v1/sessions). */
    session_id: SessionId.optional(),
    /** Files readable by the code in its working directory, under their names (read-only). */
    file_ids: FileIds.optional(),
  })
  .strict()
export type ExecutionRequest = z.infer<typeof ExecutionRequest>

export const Execution = z.object({
  id: z.string(),
  object: z.literal('execution'),
  organization_id: z.string(),
  status: z.enum(['completed', 'failed', 'timed_out']),
  code: z.string(),
  outputs: z.array(PublicOutputItem),
  output_dropped_bytes: z.int().min(0),
  duration_ms: z.number(),
  created_at: z.int(),
  session_id: z.string().optional(),
})
export type Execution = z.infer<typeof Execution>

/** POST /v1/sessions */
export const SessionCreate = z.object({ organization_id: OrganizationId.optional() }).strict()

export interface SessionObject {
  id: string
  object: 'session'
  organization_id: string
  created_at: number
  last_active_at: number
  /** When it expires if it stays idle (unix seconds). */
  expires_at: number
  /** Files the session's code generated, by name: later blocks find them in the working directory. */
  files: { filename: string; file_id: string }[]
}
