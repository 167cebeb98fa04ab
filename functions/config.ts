import { z } from 'zod'

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1')

/** The API function's configuration, read once from the environment at cold start. */
const ApiEnv = z.object({
  SANDBOX_FUNCTION_NAME: z.string().min(1),
  SANDBOX_TENANT_ISOLATION: bool.default(true),
  TABLE_NAME: z.string().min(1),
  CODE_TIMEOUT_MS: z.coerce.number().int().min(100).max(900_000).default(30_000),
})

export type ApiConfig = Readonly<{
  sandboxFunctionName: string
  tenantIsolation: boolean
  tableName: string
  codeTimeoutMs: number
}>

export function loadApiConfig(env: Record<string, string | undefined> = process.env): ApiConfig {
  const parsed = ApiEnv.safeParse(env)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new Error(`Configuration error: ${issue?.path.join('.')}: ${issue?.message}`)
  }
  const e = parsed.data
  return Object.freeze({
    sandboxFunctionName: e.SANDBOX_FUNCTION_NAME,
    tenantIsolation: e.SANDBOX_TENANT_ISOLATION,
    tableName: e.TABLE_NAME,
    codeTimeoutMs: e.CODE_TIMEOUT_MS,
  })
}
