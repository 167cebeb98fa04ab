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

const Base64 = z.string().regex(/^[A-Za-z0-9+/=]*$/)
const Sha256 = z.string().regex(/^[0-9a-f]{64}$/)
/** A presigned S3 URL: only the trusted runner uses it, never the code. */
const TransferUrl = z.string().max(8192).regex(/^https?:\/\/[^\s]+$/)

/** A file name the sandbox may create in the working directory: no path, no hidden or special names. */
export const SandboxFileName = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[^./\\\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]*$/, 'must not start with a dot or contain slashes or control characters')

export const MAX_INPUT_FILES = 100
export const MAX_UPLOAD_SLOTS = 16
export const MAX_STATE_PARTS = 256

/** A file placed in the working directory before the code runs: inline, or fetched by the runner. */
export const InputFile = z
  .object({
    name: SandboxFileName,
    bytes: z.int().min(0).max(5 * 1024 ** 3),
    /** Input files are read-only (mode 0444); files a session generated earlier stay writable. */
    writable: z.boolean().optional(),
    data: Base64.optional(),
    url: TransferUrl.optional(),
  })
  .strict()
export type InputFile = z.infer<typeof InputFile>

/**
 * One part of a serialized Python namespace: part 0 is the pickle stream, the rest are its
 * out-of-band buffers (large arrays), addressed by SHA-256 so a warm runner can keep them.
 */
export const StatePartIn = z
  .object({ sha256: Sha256, bytes: z.int().min(0), data: Base64.optional(), url: TransferUrl.optional() })
  .strict()
export const StateIn = z.object({ parts: z.array(StatePartIn).min(1).max(MAX_STATE_PARTS) }).strict()
export type StateIn = z.infer<typeof StateIn>

/** API -> sandbox. */
export const SandboxPayload = z
  .object({
    version: z.literal(1),
    action: z.enum(['execute', 'probe']).default('execute'),
    request_id: z.string().min(1).max(128).regex(/^[A-Za-z0-9_.:-]+$/),
    code: z.string().max(MAX_CODE_CHARS),
    limits: SandboxLimits.optional(),
    /** Placed in the working directory under their names before the code runs. */
    files: z.array(InputFile).max(MAX_INPUT_FILES).optional(),
    /** The namespace an earlier block left. */
    state: StateIn.optional(),
    want_state: z.boolean().optional(),
    /** Presigned PUT URLs the runner may fill with what does not fit in the result (large files, state parts). */
    uploads: z.array(TransferUrl).max(MAX_UPLOAD_SLOTS).optional(),
  })
  .strict()
export type SandboxPayload = z.input<typeof SandboxPayload>

/**
 * The richer forms of a result or a display() besides its text/plain (which is the item's `text`),
 * as a Jupyter kernel keeps them in its MIME bundle. An image/png is an image item of its own.
 */
export const MimeBundle = z
  .object({
    'text/html': z.string().optional(),
    'text/markdown': z.string().optional(),
    'text/latex': z.string().optional(),
    'image/svg+xml': z.string().optional(),
    /** Any JSON value, as the object gave it. */
    'application/json': z.unknown().optional(),
  })
  .strict()
export type MimeBundle = z.infer<typeof MimeBundle>

export const TextOutput = z
  .object({
    type: z.literal('text'),
    /** stdout, stderr, the value of the final expression (or a display()), or a notice from the sandbox itself. */
    source: z.enum(['stdout', 'stderr', 'result', 'sandbox']),
    text: z.string(),
    /** source `result` only, when the object offers more than text (a DataFrame's HTML table, LaTeX, ...). */
    mime_bundle: MimeBundle.optional(),
  })
  .strict()
/** Generated media travel inline (`data`, base64) or, when large, in the upload slot `slot`. */
export const ImageOutput = z
  .object({
    type: z.literal('image'),
    mime_type: z.literal('image/png'),
    bytes: z.int().min(0).optional(),
    data: Base64.optional(),
    slot: z.int().min(0).max(MAX_UPLOAD_SLOTS - 1).optional(),
  })
  .strict()
export const FileOutput = z
  .object({
    type: z.literal('file'),
    filename: z.string().min(1).max(1024),
    mime_type: z.string().max(255),
    bytes: z.int().min(0),
    data: Base64.optional(),
    slot: z.int().min(0).max(MAX_UPLOAD_SLOTS - 1).optional(),
  })
  .strict()
export const ErrorOutput = z
  .object({ type: z.literal('error'), name: z.string().max(200), message: z.string(), traceback: z.string() })
  .strict()
export const OutputItem = z.discriminatedUnion('type', [TextOutput, ImageOutput, FileOutput, ErrorOutput])
export type OutputItem = z.infer<typeof OutputItem>

export const StatePartOut = z
  .object({
    sha256: Sha256,
    bytes: z.int().min(0),
    data: Base64.optional(),
    slot: z.int().min(0).max(MAX_UPLOAD_SLOTS - 1).optional(),
  })
  .strict()
export const StateOut = z.object({ parts: z.array(StatePartOut).min(1).max(MAX_STATE_PARTS) }).strict()
export type StateOut = z.infer<typeof StateOut>

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
    /** The namespace after the block: each part inline, in an upload slot, or (neither) an unchanged input part. */
    state: StateOut.optional(),
    layers: z.record(z.string(), z.union([z.boolean(), z.string(), z.number()])).optional(),
    /** Probe: layers the runner attempted and was refused, with the reason (e.g. "[Errno 1] ..."). */
    refused: z.record(z.string(), z.string()).optional(),
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
