/**
 * The contract between the API and the sandbox Lambda: one invocation runs one code block.
 *
 * This file is the single source. `npm run contract` writes its JSON Schema to
 * python-runtime/sandbox/contract.schema.json, which the Python runtime validates against;
 * test/unit/contract.test.ts fails when the two drift, and both sides run the same fixtures
 * in test/fixtures/contract/.
 */
import { z } from 'zod'

/** Limits a caller may ask for; the sandbox only ever tightens its configured defaults. */
export const SandboxLimits = z
  .object({
    timeout_ms: z.int().min(1).max(900_000),
    memory_mb: z.int().min(16).max(10_240),
    max_processes: z.int().min(1).max(4096),
    max_file_bytes: z.int().min(1).max(10 * 1024 ** 3),
    max_open_files: z.int().min(16).max(65_536),
    max_output_bytes: z.int().min(1024).max(64 * 1024 ** 2),
    max_files: z.int().min(0).max(1000),
    max_files_bytes: z.int().min(0).max(64 * 1024 ** 2),
    max_state_bytes: z.int().min(0).max(1024 ** 3),
  })
  .partial()
  .strict()

export const MAX_CODE_CHARS = 200_000

/** API -> sandbox. */
export const SandboxPayload = z
  .object({
    version: z.literal(1),
    action: z.enum(['execute', 'probe']).default('execute'),
    request_id: z.string().min(1).max(128).regex(/^[A-Za-z0-9_.:-]+$/),
    code: z.string().max(MAX_CODE_CHARS),
    limits: SandboxLimits.optional(),
    /** base64 of the serialized namespace returned by an earlier block. */
    state: z.string().max(8 * 1024 ** 2).regex(/^[A-Za-z0-9+/=]*$/).optional(),
    want_state: z.boolean().optional(),
  })
  .strict()
export type SandboxPayload = z.input<typeof SandboxPayload>

export const TextOutput = z
  .object({
    type: z.literal('text'),
    /** stdout, stderr, the value of the final expression, or a notice from the sandbox itself. */
    source: z.enum(['stdout', 'stderr', 'result', 'sandbox']),
    text: z.string(),
  })
  .strict()
export const ImageOutput = z
  .object({ type: z.literal('image'), mime_type: z.literal('image/png'), data: z.string() })
  .strict()
export const FileOutput = z
  .object({
    type: z.literal('file'),
    filename: z.string().min(1).max(1024),
    mime_type: z.string().max(255),
    bytes: z.int().min(0),
    data: z.string(),
  })
  .strict()
export const ErrorOutput = z
  .object({ type: z.literal('error'), name: z.string().max(200), message: z.string(), traceback: z.string() })
  .strict()
export const OutputItem = z.discriminatedUnion('type', [TextOutput, ImageOutput, FileOutput, ErrorOutput])
export type OutputItem = z.infer<typeof OutputItem>

/** sandbox -> API. Untrusted: parsed strictly before anything else reads it. */
export const SandboxResult = z
  .object({
    version: z.literal(1),
    status: z.enum(['completed', 'failed', 'timed_out']),
    outputs: z.array(OutputItem).max(10_000),
    output_dropped_bytes: z.int().min(0).optional(),
    duration_ms: z.number().min(0),
    timings: z
      .object({ wait_ms: z.number().min(0), run_ms: z.number().min(0), total_ms: z.number().min(0) })
      .strict()
      .optional(),
    state: z.string().regex(/^[A-Za-z0-9+/=]*$/).optional(),
    layers: z.record(z.string(), z.union([z.boolean(), z.string(), z.number()])).optional(),
    zygote: z.record(z.string(), z.union([z.string(), z.number()])).optional(),
  })
  .strict()
export type SandboxResult = z.infer<typeof SandboxResult>

export function contractJsonSchema(): Record<string, unknown> {
  return {
    $comment: 'Generated from functions/contract/sandbox.ts by `npm run contract`; do not edit.',
    payload: z.toJSONSchema(SandboxPayload, { io: 'input' }),
    result: z.toJSONSchema(SandboxResult),
  }
}
