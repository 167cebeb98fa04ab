import { BedrockRuntimeClient } from '@aws-sdk/client-bedrock-runtime'
import { z } from 'zod'
import type { ModelProvider } from '../../core/model'
import { BedrockModel } from './bedrock'
import { OpenAICompatibleModel } from './openai'
import { ScriptedModel } from './scripted'

export { BedrockModel } from './bedrock'
export { OpenAICompatibleModel } from './openai'
export { loadScript, ScriptedModel } from './scripted'

export { MODEL_NOT_CONFIGURED_HINT } from '../../core/model'

const text = z.string().min(1)
// Plain z.url() takes "localhost:11434" as a URL with scheme "localhost:".
const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
const ModelEnv = z.object({
  MODEL_PROVIDER: z.enum(['bedrock', 'openai', 'scripted']).optional(),
  MODEL_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(10).optional(),
  MODEL_RETRY_BASE_DELAY_MS: z.coerce.number().int().min(0).max(60_000).optional(),
  BEDROCK_MODEL_ID: text.optional(),
  AWS_REGION: text.optional(),
  AWS_PROFILE: text.optional(),
  // Read by the SDK itself; validated here so a typo fails at start with the variable's name.
  AWS_ENDPOINT_URL_BEDROCK_RUNTIME: httpUrl.optional(),
  OPENAI_BASE_URL: httpUrl.optional(),
  OPENAI_API_KEY: text.optional(),
  OPENAI_MODEL: text.optional(),
  OPENAI_SUPPORTS_IMAGES: z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1').optional(),
  SCRIPTED_MODEL_FILE: text.optional(),
})
type ModelEnv = z.infer<typeof ModelEnv>

/** Any one of these means the SDK's default chain can find credentials without IMDS. */
const CREDENTIAL_VARS = [
  'AWS_ACCESS_KEY_ID',
  'AWS_PROFILE',
  'AWS_CONTAINER_CREDENTIALS_FULL_URI',
  'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
  'AWS_WEB_IDENTITY_TOKEN_FILE',
  'AWS_BEARER_TOKEN_BEDROCK',
]

export interface ModelProviderOverrides {
  /** Used instead of a client built from the environment (give it maxAttempts: 1). */
  bedrockClient?: BedrockRuntimeClient
  fetch?: typeof fetch
  maxAttempts?: number
  baseDelayMs?: number
}

/**
 * Builds the configured model provider, or undefined when none is configured.
 * MODEL_PROVIDER selects; unset, the first that is configured wins: bedrock, openai, scripted.
 * Throws an Error naming the variable when the configuration is wrong.
 */
export function createModelProvider(
  env: Record<string, string | undefined> = process.env,
  overrides: ModelProviderOverrides = {},
): ModelProvider | undefined {
  const e = parseEnv(env)
  const provider = e.MODEL_PROVIDER ?? detect(env, e)
  const retry = {
    maxAttempts: overrides.maxAttempts ?? e.MODEL_MAX_ATTEMPTS,
    baseDelayMs: overrides.baseDelayMs ?? e.MODEL_RETRY_BASE_DELAY_MS,
  }
  switch (provider) {
    case 'bedrock': {
      const defaultModel = need(e.BEDROCK_MODEL_ID, 'BEDROCK_MODEL_ID', 'the bedrock provider')
      // The JS SDK reads AWS_REGION (not AWS_DEFAULT_REGION) or the profile's region.
      if (!overrides.bedrockClient && !e.AWS_REGION && !e.AWS_PROFILE) need(undefined, 'AWS_REGION', 'the bedrock provider')
      // The adapter owns retries; the SDK's own would multiply with them.
      const client = overrides.bedrockClient ?? new BedrockRuntimeClient({ maxAttempts: 1 })
      return new BedrockModel({ client, defaultModel, ...retry })
    }
    case 'openai':
      return new OpenAICompatibleModel({
        baseUrl: need(e.OPENAI_BASE_URL, 'OPENAI_BASE_URL', 'the openai provider'),
        defaultModel: need(e.OPENAI_MODEL, 'OPENAI_MODEL', 'the openai provider'),
        apiKey: e.OPENAI_API_KEY,
        supportsImages: e.OPENAI_SUPPORTS_IMAGES ?? false,
        fetch: overrides.fetch,
        ...retry,
      })
    case 'scripted':
      return new ScriptedModel({ script: need(e.SCRIPTED_MODEL_FILE, 'SCRIPTED_MODEL_FILE', 'the scripted provider') })
    default:
      return undefined
  }
}

function parseEnv(env: Record<string, string | undefined>): ModelEnv {
  // An empty variable counts as unset, as in a shell `FOO= cmd`.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''))
  const parsed = ModelEnv.safeParse(present)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new Error(`Configuration error: ${issue.path.join('.')}: ${issue.message}`)
  }
  return parsed.data
}

function detect(env: Record<string, string | undefined>, e: ModelEnv): ModelEnv['MODEL_PROVIDER'] {
  if (e.BEDROCK_MODEL_ID && CREDENTIAL_VARS.some((name) => env[name])) return 'bedrock'
  if (e.OPENAI_BASE_URL) return 'openai'
  if (e.SCRIPTED_MODEL_FILE) return 'scripted'
  return undefined
}

function need(value: string | undefined, name: string, what: string): string {
  if (!value) throw new Error(`Configuration error: ${name}: required for ${what}`)
  return value
}
