import { execFile } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, test } from 'vitest'
import { BedrockModel, createModelProvider, OpenAICompatibleModel, ScriptedModel } from '../../functions/adapters/models/index'
import type { ModelRequest } from '../../functions/core/model'
import { converseText, startConverseServer } from '../support/converse-server'
import { chatError, chatText, startOpenAIServer } from '../support/openai-server'

const SCRIPT = fileURLToPath(new URL('../fixtures/scripted/compound-interest.json', import.meta.url))
const FACTORY = fileURLToPath(new URL('../../functions/adapters/models/index.ts', import.meta.url))
const BEDROCK = { BEDROCK_MODEL_ID: 'amazon.nova-pro-v1:0', AWS_REGION: 'us-east-1' }
const OPENAI = { OPENAI_BASE_URL: 'http://127.0.0.1:9/v1', OPENAI_MODEL: 'llama3.1' }
const ask: ModelRequest = {
  model: '',
  system: 's',
  messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }],
  tools: [],
  toolChoice: 'auto',
}

describe('createModelProvider selection', () => {
  test('nothing configured gives undefined (the API answers 503 model_not_configured)', () => {
    expect(createModelProvider({})).toBeUndefined()
  })

  test.each([
    'AWS_ACCESS_KEY_ID',
    'AWS_PROFILE',
    'AWS_CONTAINER_CREDENTIALS_FULL_URI',
    'AWS_WEB_IDENTITY_TOKEN_FILE',
  ])('bedrock is picked when %s and a model id are set, ahead of openai and scripted', (credential) => {
    const model = createModelProvider({ ...BEDROCK, ...OPENAI, SCRIPTED_MODEL_FILE: SCRIPT, [credential]: 'x' })
    expect(model).toBeInstanceOf(BedrockModel)
    expect(model).toMatchObject({ name: 'bedrock', defaultModel: 'amazon.nova-pro-v1:0' })
  })

  test('a model id without credentials does not pick bedrock', () => {
    expect(createModelProvider({ ...BEDROCK, ...OPENAI })).toBeInstanceOf(OpenAICompatibleModel)
    expect(createModelProvider(BEDROCK)).toBeUndefined()
  })

  test('credentials without a model id do not pick bedrock', () => {
    expect(createModelProvider({ AWS_ACCESS_KEY_ID: 'x', AWS_REGION: 'us-east-1' })).toBeUndefined()
  })

  test('openai is picked when its base URL is set, ahead of scripted', () => {
    const model = createModelProvider({ ...OPENAI, SCRIPTED_MODEL_FILE: SCRIPT })
    expect(model).toBeInstanceOf(OpenAICompatibleModel)
    expect(model).toMatchObject({ name: 'openai', defaultModel: 'llama3.1' })
  })

  test('scripted is picked when only its file is set', () => {
    expect(createModelProvider({ SCRIPTED_MODEL_FILE: SCRIPT })).toMatchObject({ name: 'scripted', defaultModel: 'scripted' })
  })

  test('MODEL_PROVIDER overrides detection', () => {
    const env = { ...BEDROCK, AWS_ACCESS_KEY_ID: 'x', ...OPENAI, SCRIPTED_MODEL_FILE: SCRIPT }
    expect(createModelProvider({ ...env, MODEL_PROVIDER: 'scripted' })).toBeInstanceOf(ScriptedModel)
    expect(createModelProvider({ ...env, MODEL_PROVIDER: 'openai' })).toBeInstanceOf(OpenAICompatibleModel)
  })

  test('MODEL_PROVIDER=bedrock needs no credential variable (a role may supply them)', () => {
    expect(createModelProvider({ ...BEDROCK, MODEL_PROVIDER: 'bedrock' })).toBeInstanceOf(BedrockModel)
  })

  test('empty variables count as unset', () => {
    expect(createModelProvider({ MODEL_PROVIDER: '', OPENAI_BASE_URL: '', SCRIPTED_MODEL_FILE: SCRIPT })).toBeInstanceOf(ScriptedModel)
  })

  test.each<[string, Record<string, string>, RegExp]>([
    ['an unknown provider', { MODEL_PROVIDER: 'gemini' }, /^Configuration error: MODEL_PROVIDER: /],
    ['a base URL without http(s)', { OPENAI_BASE_URL: 'localhost:11434/v1' }, /OPENAI_BASE_URL: must be an http\(s\) URL/],
    ['a bad endpoint override', { AWS_ENDPOINT_URL_BEDROCK_RUNTIME: 'nope' }, /AWS_ENDPOINT_URL_BEDROCK_RUNTIME/],
    ['bedrock without a model id', { MODEL_PROVIDER: 'bedrock', AWS_REGION: 'us-east-1' }, /BEDROCK_MODEL_ID: required for the bedrock provider/],
    ['bedrock without a region', { MODEL_PROVIDER: 'bedrock', BEDROCK_MODEL_ID: 'm', AWS_DEFAULT_REGION: 'us-east-1' }, /AWS_REGION: required/],
    ['openai without a model', { OPENAI_BASE_URL: 'http://localhost:11434/v1' }, /OPENAI_MODEL: required for the openai provider/],
    ['openai selected without a base URL', { MODEL_PROVIDER: 'openai', OPENAI_MODEL: 'm' }, /OPENAI_BASE_URL: required/],
    ['a retry count out of range', { ...OPENAI, MODEL_MAX_ATTEMPTS: '0' }, /MODEL_MAX_ATTEMPTS/],
    ['a bad boolean', { ...OPENAI, OPENAI_SUPPORTS_IMAGES: 'yes' }, /OPENAI_SUPPORTS_IMAGES/],
    ['a missing script file', { SCRIPTED_MODEL_FILE: '/nonexistent/turns.json' }, /\/nonexistent\/turns\.json/],
  ])('rejects %s with a message naming the variable', (_name, env, message) => {
    expect(() => createModelProvider(env)).toThrow(message)
  })
})

describe('createModelProvider end to end', () => {
  test('the openai provider uses the key and the retry settings from the environment', async () => {
    const server = await startOpenAIServer()
    try {
      server.enqueue(chatError(503, 'busy'), chatText('hello'))
      const env = { OPENAI_BASE_URL: server.baseUrl, OPENAI_MODEL: 'm', OPENAI_API_KEY: 'sk-env', MODEL_MAX_ATTEMPTS: '1' }
      await expect(createModelProvider(env)!.converse(ask)).rejects.toMatchObject({ name: 'ModelError', retryable: true })
      expect(server.requests).toHaveLength(1)
      expect(server.requests[0].headers.authorization).toBe('Bearer sk-env')
      const turn = await createModelProvider(env)!.converse(ask)
      expect(turn.content).toEqual([{ type: 'text', text: 'hello' }])
    } finally {
      await server.close()
    }
  })

  test('bedrock from a clean process environment: the SDK reads AWS_ENDPOINT_URL_BEDROCK_RUNTIME, credentials and region', async () => {
    // A child process, so the real environment is what the SDK sees and this process's is untouched.
    const server = await startConverseServer()
    try {
      server.enqueue(converseText('from the stand-in'))
      const script = `const { createModelProvider } = await import(${JSON.stringify(FACTORY)});
        const turn = await createModelProvider().converse(${JSON.stringify(ask)});
        console.log(JSON.stringify(turn)); process.exit(0)`
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        env: {
          PATH: process.env.PATH,
          HOME: mkdtempSync(join(tmpdir(), 'home-')),
          AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
          AWS_ACCESS_KEY_ID: 'AKIDCHILD',
          AWS_SECRET_ACCESS_KEY: 'secret',
          AWS_REGION: 'eu-west-1',
          BEDROCK_MODEL_ID: 'eu.anthropic.claude-sonnet-4-20250514-v1:0',
          AWS_ENDPOINT_URL_BEDROCK_RUNTIME: server.url,
        },
        cwd: fileURLToPath(new URL('../..', import.meta.url)),
      })
      expect(JSON.parse(stdout).content).toEqual([{ type: 'text', text: 'from the stand-in' }])
      expect(server.requests[0].modelId).toBe('eu.anthropic.claude-sonnet-4-20250514-v1:0')
      expect(String(server.requests[0].headers.authorization)).toMatch(/Credential=AKIDCHILD\/\d{8}\/eu-west-1\/bedrock\/aws4_request/)
    } finally {
      await server.close()
    }
  })
})
