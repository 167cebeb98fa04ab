import { test as base, describe, expect } from 'vitest'
import { OpenAICompatibleModel, type OpenAICompatibleModelOptions } from '../../functions/adapters/models/openai'
import { ModelError, type ModelRequest } from '../../functions/core/model'
import { chatBody, chatError, chatText, chatToolCall, type OpenAIServer, startOpenAIServer } from '../support/openai-server'

const PYTHON_TOOL = {
  name: 'python',
  description: 'Run Python code.',
  inputSchema: { type: 'object', properties: { code: { type: 'string' } }, required: ['code'] },
}
const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3, 4])

const test = base.extend<{ server: OpenAIServer; connect: (o?: Partial<OpenAICompatibleModelOptions>) => OpenAICompatibleModel }>({
  server: async ({}, use) => {
    const server = await startOpenAIServer()
    try {
      await use(server)
    } finally {
      await server.close()
    }
  },
  connect: async ({ server }, use) => {
    await use((o = {}) => new OpenAICompatibleModel({ baseUrl: server.baseUrl, defaultModel: 'qwen2.5-coder', maxAttempts: 3, baseDelayMs: 5, ...o }))
  },
})

const ask = (overrides: Partial<ModelRequest> = {}): ModelRequest => ({
  model: '',
  system: 'Be brief.',
  messages: [{ role: 'user', content: [{ type: 'text', text: 'What is 2**10?' }] }],
  tools: [PYTHON_TOOL],
  toolChoice: 'auto',
  ...overrides,
})

const toolHistory = (content: Extract<ModelRequest['messages'][number]['content'][number], { type: 'tool_result' }>['content']): ModelRequest['messages'] => [
  { role: 'user', content: [{ type: 'text', text: 'Plot it.' }] },
  { role: 'assistant', content: [{ type: 'text', text: 'Plotting.' }, { type: 'tool_use', id: 'call_1', name: 'python', input: { code: 'plot()' } }] },
  { role: 'user', content: [{ type: 'tool_result', toolUseId: 'call_1', status: 'success', content }] },
]

describe('OpenAICompatibleModel over fetch', () => {
  test('sends system first, tools as functions and tool_choice, and maps a tool call', async ({ server, connect }) => {
    // Prepare
    server.enqueue(chatToolCall('call_abc', 'python', '{"code":"print(2**10)"}'))

    // Act
    const turn = await connect({ apiKey: 'sk-test' }).converse(ask())

    // Assess
    const sent = server.requests[0]
    expect(sent.headers.authorization).toBe('Bearer sk-test')
    expect(sent.body).toEqual({
      model: 'qwen2.5-coder',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'What is 2**10?' },
      ],
      tools: [{ type: 'function', function: { name: 'python', description: 'Run Python code.', parameters: PYTHON_TOOL.inputSchema } }],
      tool_choice: 'auto',
    })
    expect(turn).toEqual({
      content: [{ type: 'tool_use', id: 'call_abc', name: 'python', input: { code: 'print(2**10)' } }],
      stopReason: 'tool_use',
      usage: { inputTokens: 12, outputTokens: 7 },
    })
  })

  test('required tool choice, a request model and maxTokens are sent; no key means no authorization', async ({ server, connect }) => {
    server.enqueue(chatToolCall('c', 'python', '{"code":"1"}'))
    await connect().converse(ask({ toolChoice: 'required', model: 'gpt-4.1-mini', maxTokens: 100 }))
    const sent = server.requests[0]
    expect(sent.body).toMatchObject({ tool_choice: 'required', model: 'gpt-4.1-mini', max_tokens: 100 })
    expect(sent.headers.authorization).toBeUndefined()
  })

  test('with no tools it sends neither tools nor tool_choice', async ({ server, connect }) => {
    server.enqueue(chatText('1024'))
    const turn = await connect().converse(ask({ tools: [], toolChoice: 'required' }))
    expect(server.requests[0].body).not.toHaveProperty('tools')
    expect(server.requests[0].body).not.toHaveProperty('tool_choice')
    expect(turn).toMatchObject({ content: [{ type: 'text', text: '1024' }], stopReason: 'end_turn' })
  })

  test('assistant tool calls carry JSON-string arguments and results become tool messages', async ({ server, connect }) => {
    server.enqueue(chatText('The total is 42.'))
    await connect().converse(ask({ messages: toolHistory([{ type: 'text', text: '42' }]) }))
    expect(server.requests[0].body.messages.slice(2)).toEqual([
      {
        role: 'assistant',
        content: 'Plotting.',
        tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'python', arguments: '{"code":"plot()"}' } }],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '42' },
    ])
  })

  test('without image support an image result is described in text', async ({ server, connect }) => {
    server.enqueue(chatText('ok'))
    await connect().converse(ask({ messages: toolHistory([{ type: 'text', text: 'saved' }, { type: 'image', format: 'png', data: PNG }]) }))
    const messages = server.requests[0].body.messages
    expect(messages.at(-1)).toEqual({ role: 'tool', tool_call_id: 'call_1', content: 'saved\n[image returned: 8 bytes PNG]' })
  })

  test('with image support the image follows as a user message with a data URL', async ({ server, connect }) => {
    server.enqueue(chatText('ok'))
    await connect({ supportsImages: true }).converse(ask({ messages: toolHistory([{ type: 'image', format: 'png', data: PNG }]) }))
    const messages = server.requests[0].body.messages
    expect(messages.at(-2)).toMatchObject({ role: 'tool', tool_call_id: 'call_1' })
    expect(messages.at(-1)).toEqual({
      role: 'user',
      content: [
        { type: 'text', text: 'Images returned by the tool:' },
        { type: 'image_url', image_url: { url: `data:image/png;base64,${Buffer.from(PNG).toString('base64')}` } },
      ],
    })
  })

  test('an error tool result keeps its status in the text', async ({ server, connect }) => {
    server.enqueue(chatText('fixing'))
    const messages = toolHistory([{ type: 'text', text: 'NameError: x' }])
    ;(messages[2].content[0] as { status: string }).status = 'error'
    await connect().converse(ask({ messages }))
    expect(server.requests[0].body.messages.at(-1).content).toBe('[status: error]\nNameError: x')
  })

  test.for([
    ['stop', 'end_turn'],
    ['length', 'max_tokens'],
    ['content_filter', 'other'],
  ] as const)('finish_reason %s maps to %s', async ([finish, expected], { server, connect }) => {
    server.enqueue(chatText('x', finish))
    expect((await connect().converse(ask())).stopReason).toBe(expected)
  })

  test('tool calls with finish_reason stop (as Ollama sends) are still tool_use', async ({ server, connect }) => {
    server.enqueue(chatToolCall('c1', 'python', '{"code":"1+1"}', null, 'stop'))
    expect((await connect().converse(ask())).stopReason).toBe('tool_use')
  })

  test('raw code in the arguments is accepted as {code}', async ({ server, connect }) => {
    server.enqueue(chatToolCall('c1', 'python', 'import math\nprint(math.pi)'))
    const turn = await connect().converse(ask())
    expect(turn.content).toEqual([{ type: 'tool_use', id: 'c1', name: 'python', input: { code: 'import math\nprint(math.pi)' } }])
  })

  test('broken JSON arguments are a ModelError', async ({ server, connect }) => {
    server.enqueue(chatToolCall('c1', 'python', '{"code": "print(1)'))
    const error = await connect().converse(ask()).catch((e) => e)
    expect(error).toBeInstanceOf(ModelError)
    expect(error.message).toContain('not valid JSON')
  })

  test('429 and 5xx are retried, then the answer is used', async ({ server, connect }) => {
    server.enqueue(chatError(429, 'Rate limit reached', { 'retry-after': '0' }), chatError(502, 'Bad gateway'), chatText('done'))
    const turn = await connect().converse(ask())
    expect(server.requests).toHaveLength(3)
    expect(turn.content).toEqual([{ type: 'text', text: 'done' }])
  })

  test('persistent 503 ends in a retryable ModelError naming the model', async ({ server, connect }) => {
    server.enqueue(...Array.from({ length: 3 }, () => chatError(503, 'overloaded')))
    const error = await connect().converse(ask()).catch((e) => e)
    expect(error).toMatchObject({ name: 'ModelError', retryable: true })
    expect(error.message).toContain('"qwen2.5-coder"')
    expect(error.message).toContain('overloaded')
    expect(server.requests).toHaveLength(3)
  })

  test('a 400 is not retried and carries the server message', async ({ server, connect }) => {
    server.enqueue(chatError(400, "model 'nope' not found"))
    const error = await connect().converse(ask({ model: 'nope' })).catch((e) => e)
    expect(error).toMatchObject({ name: 'ModelError', retryable: false })
    expect(error.message).toContain("HTTP 400: model 'nope' not found")
    expect(server.requests).toHaveLength(1)
  })

  test('an answer without choices is a ModelError', async ({ server, connect }) => {
    server.enqueue({ body: { ...chatBody({}, 'stop'), choices: [] } })
    await expect(connect().converse(ask())).rejects.toThrow(/returned no choices/)
  })

  test('a refused connection is retried and reported as retryable', async () => {
    const server = await startOpenAIServer()
    await server.close()
    const model = new OpenAICompatibleModel({ baseUrl: server.baseUrl, defaultModel: 'm', maxAttempts: 2, baseDelayMs: 1 })
    const error = await model.converse(ask()).catch((e) => e)
    expect(error).toMatchObject({ name: 'ModelError', retryable: true })
    expect(error.message).toContain('ECONNREFUSED')
  })
})
