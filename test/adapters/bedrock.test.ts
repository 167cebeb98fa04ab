import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { BedrockRuntimeClient } from '@aws-sdk/client-bedrock-runtime'
import { test as base, describe, expect } from 'vitest'
import { BedrockModel } from '../../functions/adapters/models/bedrock'
import { ModelError, type ModelRequest } from '../../functions/core/model'
import {
  type ConverseServer,
  converseError,
  converseText,
  converseToolUse,
  startConverseServer,
} from '../support/converse-server'

const MODEL = 'us.anthropic.claude-sonnet-4-20250514-v1:0'
const PYTHON_TOOL = {
  name: 'python',
  description: 'Run Python code.',
  inputSchema: { type: 'object', properties: { code: { type: 'string' } }, required: ['code'] },
}
const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

const test = base.extend<{ server: ConverseServer; model: BedrockModel }>({
  server: async ({}, use) => {
    const server = await startConverseServer()
    try {
      await use(server)
    } finally {
      await server.close()
    }
  },
  model: async ({ server }, use) => {
    // The real client, default HTTP/2 handler; dummy credentials, SDK retries off (the adapter retries).
    const client = new BedrockRuntimeClient({
      endpoint: server.url,
      region: 'us-east-1',
      credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' },
      maxAttempts: 1,
    })
    try {
      await use(new BedrockModel({ client, defaultModel: MODEL, maxAttempts: 3, baseDelayMs: 5 }))
    } finally {
      client.destroy()
    }
  },
})

const ask = (overrides: Partial<ModelRequest> = {}): ModelRequest => ({
  model: '',
  system: 'You are a careful analyst.',
  messages: [{ role: 'user', content: [{ type: 'text', text: 'What is 2**10?' }] }],
  tools: [PYTHON_TOOL],
  toolChoice: 'auto',
  ...overrides,
})

describe('BedrockModel through the real BedrockRuntimeClient', () => {
  test('sends system, tools and toolChoice auto, and maps a tool_use answer', async ({ server, model }) => {
    // Prepare
    server.enqueue(converseToolUse('tooluse_1', 'python', { code: 'print(2**10)' }, 'Let me compute.'))

    // Act
    const turn = await model.converse(ask())

    // Assess
    const sent = server.requests[0]
    expect(sent.modelId).toBe(MODEL)
    expect(sent.headers[':method']).toBe('POST')
    expect(String(sent.headers.authorization)).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIDTEST\//)
    expect(sent.body.system).toEqual([{ text: 'You are a careful analyst.' }])
    expect(sent.body.messages).toEqual([{ role: 'user', content: [{ text: 'What is 2**10?' }] }])
    expect(sent.body.toolConfig).toEqual({
      tools: [{ toolSpec: { name: 'python', description: 'Run Python code.', inputSchema: { json: PYTHON_TOOL.inputSchema } } }],
      toolChoice: { auto: {} },
    })
    expect(turn).toEqual({
      content: [
        { type: 'text', text: 'Let me compute.' },
        { type: 'tool_use', id: 'tooluse_1', name: 'python', input: { code: 'print(2**10)' } },
      ],
      stopReason: 'tool_use',
      usage: { inputTokens: 10, outputTokens: 5 },
    })
  })

  test('toolChoice required is sent as any', async ({ server, model }) => {
    server.enqueue(converseToolUse('t1', 'python', { code: '1' }))
    await model.converse(ask({ toolChoice: 'required' }))
    expect(server.requests[0].body.toolConfig.toolChoice).toEqual({ any: {} })
  })

  test('with no tools it sends no toolConfig at all', async ({ server, model }) => {
    server.enqueue(converseText('1024'))
    const turn = await model.converse(ask({ tools: [], toolChoice: 'required' }))
    expect(server.requests[0].body).not.toHaveProperty('toolConfig')
    expect(turn.stopReason).toBe('end_turn')
    expect(turn.content).toEqual([{ type: 'text', text: '1024' }])
  })

  test('the request model overrides the default, and maxTokens goes to inferenceConfig', async ({ server, model }) => {
    server.enqueue(converseText('ok'))
    await model.converse(ask({ model: 'amazon.nova-pro-v1:0', maxTokens: 256 }))
    expect(server.requests[0].modelId).toBe('amazon.nova-pro-v1:0')
    expect(server.requests[0].body.inferenceConfig).toEqual({ maxTokens: 256 })
  })

  test('sends the tool_use history and a tool result with text and a PNG image block', async ({ server, model }) => {
    // Prepare
    server.enqueue(converseText('The chart shows growth.'))
    const messages: ModelRequest['messages'] = [
      { role: 'user', content: [{ type: 'text', text: 'Plot it.' }] },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'tooluse_1', name: 'python', input: { code: 'plot()' } }] },
      {
        role: 'user',
        content: [
          {
            type: 'tool_result',
            toolUseId: 'tooluse_1',
            status: 'error',
            content: [
              { type: 'text', text: 'Traceback: ...' },
              { type: 'image', format: 'png', data: PNG },
            ],
          },
        ],
      },
    ]

    // Act
    await model.converse(ask({ messages }))

    // Assess
    const sent = server.requests[0].body.messages
    expect(sent[1]).toEqual({
      role: 'assistant',
      content: [{ toolUse: { toolUseId: 'tooluse_1', name: 'python', input: { code: 'plot()' } } }],
    })
    expect(sent[2]).toEqual({
      role: 'user',
      content: [
        {
          toolResult: {
            toolUseId: 'tooluse_1',
            status: 'error',
            content: [
              { text: 'Traceback: ...' },
              { image: { format: 'png', source: { bytes: Buffer.from(PNG).toString('base64') } } },
            ],
          },
        },
      ],
    })
  })

  test('throttling is retried with backoff, then succeeds', async ({ server, model }) => {
    server.enqueue(
      converseError(429, 'ThrottlingException', 'Too many requests, please wait before trying again.'),
      converseError(503, 'ServiceUnavailableException', 'Service unavailable'),
      converseText('done'),
    )
    const turn = await model.converse(ask())
    expect(server.requests).toHaveLength(3)
    expect(turn.content).toEqual([{ type: 'text', text: 'done' }])
  })

  test('persistent throttling ends in a retryable ModelError naming the model', async ({ server, model }) => {
    server.enqueue(...Array.from({ length: 3 }, () => converseError(429, 'ThrottlingException', 'Too many requests')))
    const error = await model.converse(ask()).catch((e) => e)
    expect(error).toBeInstanceOf(ModelError)
    expect(error.retryable).toBe(true)
    expect(error.message).toContain(MODEL)
    expect(error.message).toContain('ThrottlingException')
    expect(error.message).toContain('3 attempts')
    expect(server.requests).toHaveLength(3)
  })

  test('a validation error is not retried and becomes a non-retryable ModelError', async ({ server, model }) => {
    server.enqueue(converseError(400, 'ValidationException', 'The model returned the following errors: bad input'))
    const error = await model.converse(ask()).catch((e) => e)
    expect(error).toBeInstanceOf(ModelError)
    expect(error.retryable).toBe(false)
    expect(error.message).toMatch(new RegExp(`Bedrock model "${MODEL.replace(/\./g, '\\.')}" failed: ValidationException`))
    expect(error.message).toContain('bad input')
    expect(server.requests).toHaveLength(1)
  })

  test('access denied is not retried and says what to check', async ({ server, model }) => {
    server.enqueue(converseError(403, 'AccessDeniedException', "You don't have access to the model"))
    const error = await model.converse(ask()).catch((e) => e)
    expect(error).toMatchObject({ name: 'ModelError', retryable: false })
    expect(error.message).toContain('bedrock:InvokeModel')
    expect(server.requests).toHaveLength(1)
  })

  test('a refused connection is retried, then reported as retryable', async () => {
    const server = await startConverseServer()
    const url = server.url
    await server.close()
    const client = new BedrockRuntimeClient({
      endpoint: url,
      region: 'us-east-1',
      credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' },
      maxAttempts: 1,
    })
    const model = new BedrockModel({ client, defaultModel: MODEL, maxAttempts: 2, baseDelayMs: 1 })
    const error = await model.converse(ask()).catch((e) => e)
    client.destroy()
    expect(error).toMatchObject({ name: 'ModelError', retryable: true })
    expect(error.message).toContain('2 attempts')
  })

  test('an HTTP/1.1-only endpoint fails at once with a hint: the default client speaks HTTP/2', async () => {
    const server = http.createServer((_req, res) => res.end('{}'))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const client = new BedrockRuntimeClient({
      endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      region: 'us-east-1',
      credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' },
      maxAttempts: 1,
    })
    try {
      const error = await new BedrockModel({ client, defaultModel: MODEL, baseDelayMs: 1 }).converse(ask()).catch((e) => e)
      expect(error).toMatchObject({ name: 'ModelError', retryable: false })
      expect(error.message).toContain('does not speak HTTP/2')
    } finally {
      client.destroy()
      server.closeAllConnections()
      server.close()
    }
  })

  test('an aborted signal stops the call with the abort reason, not a ModelError', async ({ server, model }) => {
    server.enqueue(converseError(429, 'ThrottlingException', 'slow down'))
    const controller = new AbortController()
    const pending = model.converse(ask({ signal: controller.signal })).catch((e) => e)
    controller.abort(new Error('response deadline'))
    const error = await pending
    expect(error).not.toBeInstanceOf(ModelError)
    expect(error.message).toBe('response deadline')
  })
})
