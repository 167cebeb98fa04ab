import { BedrockRuntimeClient } from '@aws-sdk/client-bedrock-runtime'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BedrockModel } from '../../functions/adapters/models/bedrock'
import { ScriptedModel } from '../../functions/adapters/models/scripted'
import { type ConverseServer, converseText, converseToolUse, type RecordedConverse, startConverseServer } from '../support/converse-server'
import { api, startTestService, TEST_KEY } from '../support/local'

// POST /v1/responses through every layer with the real Bedrock adapter and SDK client against
// a local server that speaks the Converse wire format, and with the scripted provider.
let ctx: Awaited<ReturnType<typeof startTestService>>
let converse: ConverseServer

const lastUserText = (r: RecordedConverse): string => {
  const users = r.body.messages.filter((m: any) => m.role === 'user' && m.content.some((c: any) => c.text))
  return users.at(-1)?.content.find((c: any) => c.text)?.text ?? ''
}
const toolResultsOf = (r: RecordedConverse) =>
  r.body.messages.flatMap((m: any) => m.content.filter((c: any) => c.toolResult).map((c: any) => c.toolResult))
const toolResultText = (r: RecordedConverse) =>
  toolResultsOf(r).at(-1)?.content.map((c: any) => c.text ?? '').join('') ?? ''

const COMPOUND = "principal = 10000\nrate = 0.07\nyears = 20\nresult = principal * (1 + rate) ** years\nprint(f'${result:,.2f}')"

/** The stand-in model: it decides by the question, like a model would, and sees tool results. */
function responder(r: RecordedConverse) {
  const question = lastUserText(r)
  const results = toolResultsOf(r)
  const step = results.length
  if (question.includes('compound interest')) {
    return step === 0 ? converseToolUse('t1', 'code_interpreter', { code: COMPOUND }) : converseText(`$10,000 at 7% for 20 years grows to ${toolResultText(r).trim()}.`)
  }
  if (question.includes('two blocks')) {
    if (step === 0) return converseToolUse('t1', 'code_interpreter', { code: "import pandas as pd\ndf = pd.DataFrame({'v': [100, 200]})\nprint(len(df))" })
    if (step === 1) return converseToolUse('t2', 'code_interpreter', { code: "print(f'total: {df.v.sum()}')" })
    return converseText(`The total is ${toolResultText(r).split(': ')[1]}`)
  }
  if (question.includes('fix it')) {
    if (step === 0) return converseToolUse('t1', 'code_interpreter', { code: 'values = [3, 1, 2]\nprint(sorted(valuez))' })
    if (step === 1) return converseToolUse('t2', 'code_interpreter', { code: 'values = [3, 1, 2]\nprint(sorted(values))' })
    return converseText(`Sorted: ${toolResultText(r).trim()}`)
  }
  if (question.includes('slow two')) {
    if (step === 0) return converseToolUse('t1', 'code_interpreter', { code: "import time\ntime.sleep(1.0)\nprint('first')" })
    if (step === 1) return converseToolUse('t2', 'code_interpreter', { code: "time.sleep(1.0)\nprint('second')" })
    return converseText('both done')
  }
  if (question.includes('loop forever')) return converseToolUse(`t${step}`, 'code_interpreter', { code: `print(${step})` })
  if (question.includes('hello')) {
    // Needs no code; with tool choice "any" the model must still call the tool.
    if (r.body.toolConfig?.toolChoice?.any && step === 0) return converseToolUse('t1', 'code_interpreter', { code: "print('hello')" })
    return converseText('Hello!')
  }
  return converseText('I do not know.')
}

async function createAssistant(tools: unknown[] = [{ type: 'code_interpreter', mode: 'auto' }], key = TEST_KEY) {
  const res = await api(ctx.service, 'POST', '/v1/assistants', { name: 'Analyst', instructions: 'Be precise.', tools }, { authorization: `Bearer ${key}` })
  expect(res.status).toBe(200)
  return res.body.id as string
}

const respond = (assistant_id: string, content: string, extra: Record<string, unknown> = {}, key = TEST_KEY) =>
  api(ctx.service, 'POST', '/v1/responses', { assistant_id, inputs: [{ role: 'user', content }], ...extra }, { authorization: `Bearer ${key}` })

beforeAll(async () => {
  converse = await startConverseServer(responder)
  const client = new BedrockRuntimeClient({
    endpoint: converse.url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    maxAttempts: 1,
  })
  ctx = await startTestService(
    {
      SANDBOX_SLOT_UID_BASE: '62300',
      PLANS_JSON: JSON.stringify({
        free: { code_interpreter: false, max_code_blocks_per_response: 0, max_executions_per_day: 0 },
        tiny: { code_interpreter: true, max_code_blocks_per_response: 2, max_executions_per_day: 3 },
        pro: { code_interpreter: true, max_code_blocks_per_response: 10, max_executions_per_day: 1000 },
      }),
    },
    { model: new BedrockModel({ client, defaultModel: 'test.model-v1:0', baseDelayMs: 1 }) },
  )
})
afterAll(async () => {
  await ctx?.stop()
  await converse?.close()
})

describe('POST /v1/responses (Bedrock Converse stand-in)', () => {
  it('answers the seed request with a code_interpreter_call and a message', async () => {
    const assistant = await createAssistant()
    const res = await respond(assistant, 'What is the compound interest on $10,000 at 7% for 20 years?', {
      organization_id: 'org_test',
      tools: [{ type: 'code_interpreter', mode: 'auto' }],
    })
    expect(res.status).toBe(200)
    const body = res.body
    expect(body).toMatchObject({ object: 'response', status: 'completed', organization_id: 'org_test', assistant_id: assistant, model: 'test.model-v1:0' })
    expect(body.id).toMatch(/^resp_/)
    const [call, message] = body.output
    expect(call).toMatchObject({ type: 'code_interpreter_call', status: 'completed', code: COMPOUND })
    expect(call.id).toMatch(/^ci_/)
    expect(call.outputs).toEqual([{ type: 'text', source: 'stdout', text: '$38,696.84' }])
    expect(message).toEqual({ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: '$10,000 at 7% for 20 years grows to $38,696.84.' }] })
    expect(body.usage).toMatchObject({ input_tokens: 20, output_tokens: 10, total_tokens: 30, code_blocks: 1 })
    expect(body.usage.sandbox_ms).toBeGreaterThan(0)
    // What the model was sent: the instructions then the tool guidance; auto tool choice; the tool.
    const first = converse.requests.at(-2)!
    expect(first.body.system[0].text).toMatch(/^Be precise\.\n\nYou can run Python 3\.\d+/)
    expect(first.body.toolConfig.toolChoice).toEqual({ auto: {} })
    expect(first.body.toolConfig.tools[0].toolSpec.name).toBe('code_interpreter')
    // The stored response is served back to its own organization only.
    const stored = await api(ctx.service, 'GET', `/v1/responses/${body.id}`)
    expect(stored.body).toEqual(body)
    const otherKey = await ctx.service.issueKey('org_stranger')
    const foreign = await api(ctx.service, 'GET', `/v1/responses/${body.id}`, undefined, { authorization: `Bearer ${otherKey}` })
    expect(foreign.status).toBe(404)
    expect(foreign.body.error.code).toBe('not_found')
  })

  it('shares Python state between the blocks of one response', async () => {
    const res = await respond(await createAssistant(), 'Use two blocks please')
    expect(res.body.status).toBe('completed')
    const calls = res.body.output.filter((o: any) => o.type === 'code_interpreter_call')
    expect(calls.map((c: any) => c.outputs[0].text)).toEqual(['2', 'total: 300'])
    expect(res.body.output.at(-1).content[0].text).toBe('The total is 300')
  })

  it('returns a failed block and its fix, and the model saw the traceback', async () => {
    const res = await respond(await createAssistant(), 'Sort this list and fix it if needed')
    const calls = res.body.output.filter((o: any) => o.type === 'code_interpreter_call')
    expect(calls.map((c: any) => c.status)).toEqual(['failed', 'completed'])
    expect(calls[0].outputs[0]).toMatchObject({ type: 'error', name: 'NameError' })
    const sawError = converse.requests.some((r) => toolResultsOf(r).some((t: any) => t.status === 'error' && JSON.stringify(t).includes("name 'valuez' is not defined")))
    expect(sawError).toBe(true)
    expect(res.body.output.at(-1).content[0].text).toBe('Sorted: [1, 2, 3]')
  })

  it('mode off offers no tool and runs no code', async () => {
    const before = converse.requests.length
    const res = await respond(await createAssistant(), 'What is the compound interest on $10,000 at 7% for 20 years?', {
      tools: [{ type: 'code_interpreter', mode: 'off' }],
    })
    expect(res.body.status).toBe('completed')
    expect(res.body.output.map((o: any) => o.type)).toEqual(['message'])
    expect(res.body.usage.code_blocks).toBe(0)
    expect(converse.requests.at(-1)!.body.toolConfig).toBeUndefined()
    expect(converse.requests.length).toBe(before + 1)
  })

  it('an assistant without the tool, and a request without tools, is off', async () => {
    const res = await respond(await createAssistant([]), 'What is the compound interest on $10,000 at 7% for 20 years?')
    expect(res.body.output.map((o: any) => o.type)).toEqual(['message'])
  })

  it('mode on forces code on the first turn even for a question that needs none', async () => {
    const res = await respond(await createAssistant([{ type: 'code_interpreter', mode: 'off' }]), 'Say hello', {
      tools: [{ type: 'code_interpreter', mode: 'on' }],
    })
    expect(res.body.output.map((o: any) => o.type)).toEqual(['code_interpreter_call', 'message'])
    const calls = converse.requests.slice(-2)
    expect(calls[0]!.body.toolConfig.toolChoice).toEqual({ any: {} })
    expect(calls[1]!.body.toolConfig.toolChoice).toEqual({ auto: {} })
  })

  it('ends incomplete at the plan bound on code blocks, keeping the calls made', async () => {
    const key = await ctx.service.issueKey('org_tiny', 'tiny')
    const assistant = await createAssistant(undefined, key)
    const res = await respond(assistant, 'Please loop forever', {}, key)
    expect(res.body.status).toBe('incomplete')
    expect(res.body.incomplete_details).toEqual({ reason: 'max_code_blocks' })
    expect(res.body.output.filter((o: any) => o.type === 'code_interpreter_call')).toHaveLength(2)
    // One more block is left today (3 per day): the next response stops at the daily bound.
    const again = await respond(assistant, 'Please loop forever', {}, key)
    expect(again.body.incomplete_details).toEqual({ reason: 'max_executions_per_day' })
    expect(again.body.usage.code_blocks).toBe(1)
    const exec = await api(ctx.service, 'POST', '/v1/executions', { organization_id: 'org_tiny', code: '1' }, { authorization: `Bearer ${key}` })
    expect(exec.status).toBe(429)
    expect(exec.body.error.code).toBe('execution_limit_reached')
  })
})

describe('streaming (stream: true)', () => {
  it('sends server-sent events in order for a two-block run, ending with the stored response', async () => {
    const assistant = await createAssistant()
    const res = await fetch(ctx.service.url + '/v1/responses', {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ assistant_id: assistant, stream: true, inputs: [{ role: 'user', content: 'Use two blocks please' }] }),
    })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toContain('text/event-stream')
    const text = await res.text()
    const events = text
      .trim()
      .split('\n\n')
      .map((chunk) => {
        const [eventLine, dataLine] = chunk.split('\n')
        const data = JSON.parse(dataLine!.slice('data: '.length))
        expect(eventLine).toBe(`event: ${data.type}`)
        return data
      })
    expect(events.map((e: any) => e.type)).toEqual([
      'response.created',
      'response.output_item.added',
      'response.code_interpreter_call.completed',
      'response.output_item.done',
      'response.output_item.added',
      'response.code_interpreter_call.completed',
      'response.output_item.done',
      'response.output_item.added',
      'response.output_text.delta',
      'response.output_item.done',
      'response.completed',
    ])
    expect(events.map((e: any) => e.sequence_number)).toEqual(events.map((_: unknown, i: number) => i))
    expect(events[0].response.status).toBe('in_progress')
    expect(events[1].item).toMatchObject({ type: 'code_interpreter_call', status: 'in_progress', outputs: [] })
    expect(events[1].item.code).toContain('pd.DataFrame')
    expect(events[5].item.outputs[0].text).toBe('total: 300')
    expect(events[8].delta).toBe('The total is 300')
    const final = events.at(-1).response
    expect(final.status).toBe('completed')
    expect(final.output).toHaveLength(3)
    // The same object is stored.
    expect((await api(ctx.service, 'GET', `/v1/responses/${final.id}`)).body).toEqual(final)
  })

  it('streams as it goes, and a client that disconnects still leaves the response stored', async () => {
    const assistant = await createAssistant()
    const abort = new AbortController()
    const started = Date.now()
    const res = await fetch(ctx.service.url + '/v1/responses', {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ assistant_id: assistant, stream: true, inputs: [{ role: 'user', content: 'slow two steps' }] }),
      signal: abort.signal,
    })
    const reader = res.body!.getReader()
    const first = new TextDecoder().decode((await reader.read()).value)
    // The first event arrives while the two one-second blocks are still to run.
    expect(Date.now() - started).toBeLessThan(900)
    const created = JSON.parse(first.split('\n')[1]!.slice('data: '.length))
    expect(created.type).toBe('response.created')
    abort.abort()
    const deadline = Date.now() + 15_000
    let stored: any
    do {
      await new Promise((r) => setTimeout(r, 100))
      stored = await api(ctx.service, 'GET', `/v1/responses/${created.response.id}`)
    } while (stored.status !== 200 && Date.now() < deadline)
    expect(stored.body.status).toBe('completed')
    expect(stored.body.output.map((o: any) => o.type)).toEqual(['code_interpreter_call', 'code_interpreter_call', 'message'])
  })

  it('answers errors as JSON before any event is sent', async () => {
    const res = await api(ctx.service, 'POST', '/v1/responses', { assistant_id: 'asst_missing', stream: true, inputs: [{ role: 'user', content: 'hi' }] })
    expect(res.status).toBe(404)
    expect(res.body.error.code).toBe('not_found')
  })
})

describe('background runs, cancel and idempotency', () => {
  const poll = async (id: string, until: (r: any) => boolean, timeoutMs = 15_000) => {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const res = await api(ctx.service, 'GET', `/v1/responses/${id}`)
      if (until(res.body) || Date.now() > deadline) return res.body
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  it('answers 202 queued, shows progress while running, and ends stored', async () => {
    const assistant = await createAssistant()
    const res = await respond(assistant, 'slow two steps', { background: true })
    expect(res.status).toBe(202)
    expect(res.body).toMatchObject({ object: 'response', status: 'queued', output: [] })
    const midway = await poll(res.body.id, (r) => r.output.length === 1)
    expect(midway.status).toBe('in_progress')
    expect(midway.output[0].outputs[0].text).toBe('first')
    const done = await poll(res.body.id, (r) => r.status === 'completed')
    expect(done.output.map((o: any) => o.type)).toEqual(['code_interpreter_call', 'code_interpreter_call', 'message'])
  })

  it('a cancelled run stops between steps and ends cancelled; an ended one cannot be cancelled', async () => {
    const assistant = await createAssistant()
    const res = await respond(assistant, 'slow two steps', { background: true })
    await poll(res.body.id, (r) => r.output.length >= 1)
    const cancel = await api(ctx.service, 'POST', `/v1/responses/${res.body.id}/cancel`)
    expect(cancel.status).toBe(200)
    expect(cancel.body.cancel_requested).toBe(true)
    const ended = await poll(res.body.id, (r) => !['queued', 'in_progress'].includes(r.status))
    expect(ended.status).toBe('cancelled')
    expect(ended.output.some((o: any) => o.type === 'message')).toBe(false)
    const again = await api(ctx.service, 'POST', `/v1/responses/${res.body.id}/cancel`)
    expect(again.status).toBe(409)
    expect(again.body.error.code).toBe('response_already_ended')
    expect((await api(ctx.service, 'POST', '/v1/responses/resp_nothing/cancel')).status).toBe(404)
  })

  it('a retried request with the same Idempotency-Key runs once and returns the same response', async () => {
    const assistant = await createAssistant()
    const headers = { authorization: `Bearer ${TEST_KEY}`, 'idempotency-key': `retry-${Date.now()}` }
    const body = { assistant_id: assistant, inputs: [{ role: 'user', content: 'What is the compound interest on $10,000 at 7% for 20 years?' }] }
    const before = converse.requests.length
    const first = await api(ctx.service, 'POST', '/v1/responses', body, headers)
    const second = await api(ctx.service, 'POST', '/v1/responses', body, headers)
    expect(second.status).toBe(200)
    expect(second.body).toEqual(first.body)
    expect(converse.requests.length - before).toBe(2)
    const other = await api(ctx.service, 'POST', '/v1/responses', body, { ...headers, 'idempotency-key': `other-${Date.now()}` })
    expect(other.body.id).not.toBe(first.body.id)
  })

  it('400 for stream together with background', async () => {
    const res = await respond(await createAssistant(), 'hi', { stream: true, background: true })
    expect(res.status).toBe(400)
    expect(res.body.error.message).toMatch(/^background/)
  })
})

describe('GET /v1/responses', () => {
  it('lists the organization\'s responses, newest first, and those of one schedule', async () => {
    const assistant = await createAssistant()
    const tagged = await respond(assistant, 'What is the compound interest on $10,000 at 7% for 20 years?', { schedule: 'daily-roi' })
    expect(tagged.body.schedule).toBe('daily-roi')
    const plain = await respond(assistant, 'What is the compound interest on $10,000 at 7% for 20 years?')
    const all = await api(ctx.service, 'GET', '/v1/responses?limit=100')
    expect(all.body.data.map((r: any) => r.id)).toEqual(expect.arrayContaining([tagged.body.id, plain.body.id]))
    const scheduled = await api(ctx.service, 'GET', '/v1/responses?schedule=daily-roi')
    expect(scheduled.body.data.map((r: any) => r.id)).toEqual([tagged.body.id])
    const otherKey = await ctx.service.issueKey('org_lister')
    const foreign = await api(ctx.service, 'GET', '/v1/responses?schedule=daily-roi', undefined, { authorization: `Bearer ${otherKey}` })
    expect(foreign.body.data).toEqual([])
    expect((await api(ctx.service, 'GET', '/v1/responses?schedule=bad%20name')).status).toBe(400)
  })
})

describe('errors of POST /v1/responses', () => {
  it.each([
    [{ tools: [{ type: 'web_search' }] }, 'tools.0.type'],
    [{ tools: [{ type: 'code_interpreter', mode: 'always' }] }, 'tools.0.mode'],
    [{ inputs: [] }, 'inputs'],
    [{ inputs: [{ role: 'system', content: 'x' }] }, 'inputs.0.role'],
    [{ inputs: [{ role: 'assistant', content: 'x' }] }, 'inputs'],
    [{ assistant_id: 'nope' }, 'assistant_id'],
    [{ surprise: 1 }, 'surprise'],
  ])('400 naming the field for %j', async (patch, field) => {
    const body = { assistant_id: 'asst_x', inputs: [{ role: 'user', content: 'hi' }], ...patch }
    const res = await api(ctx.service, 'POST', '/v1/responses', body)
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('invalid_request')
    expect(res.body.error.message.startsWith(field)).toBe(true)
  })

  it('404 for an assistant of another organization', async () => {
    const assistant = await createAssistant()
    const otherKey = await ctx.service.issueKey('org_other_404')
    const res = await respond(assistant, 'hi', {}, otherKey)
    expect(res.status).toBe(404)
    expect(res.body.error.code).toBe('not_found')
    expect((await api(ctx.service, 'GET', `/v1/assistants/${assistant}`, undefined, { authorization: `Bearer ${otherKey}` })).status).toBe(404)
  })

  it('403 code_interpreter_not_available on a plan without it, unless the tool is off', async () => {
    const key = await ctx.service.issueKey('org_free', 'free')
    const assistant = await createAssistant(undefined, key)
    const res = await respond(assistant, 'What is the compound interest on $10,000 at 7% for 20 years?', {}, key)
    expect(res.status).toBe(403)
    expect(res.body.error.code).toBe('code_interpreter_not_available')
    expect(res.body.error.message).toContain('"free" plan')
    const off = await respond(assistant, 'hi', { tools: [{ type: 'code_interpreter', mode: 'off' }] }, key)
    expect(off.status).toBe(200)
    const exec = await api(ctx.service, 'POST', '/v1/executions', { organization_id: 'org_free', code: '1' }, { authorization: `Bearer ${key}` })
    expect(exec.status).toBe(403)
    expect(exec.body.error.code).toBe('code_interpreter_not_available')
  })

  it('403 when organization_id is not the key\'s', async () => {
    const res = await respond(await createAssistant(), 'hi', { organization_id: 'org_someone_else' })
    expect(res.status).toBe(403)
    expect(res.body.error.code).toBe('forbidden')
  })

  it('401 without a key', async () => {
    const res = await api(ctx.service, 'POST', '/v1/responses', { assistant_id: 'asst_x', inputs: [{ role: 'user', content: 'hi' }] }, {})
    expect(res.status).toBe(401)
  })
})

describe('assistants', () => {
  it('create, get, list, update and delete within the organization', async () => {
    const id = await createAssistant()
    expect((await api(ctx.service, 'GET', `/v1/assistants/${id}`)).body).toMatchObject({ id, object: 'assistant', name: 'Analyst', organization_id: 'org_test' })
    const updated = await api(ctx.service, 'POST', `/v1/assistants/${id}`, { name: 'Renamed', model: 'other.model-v2:0' })
    expect(updated.body).toMatchObject({ name: 'Renamed', model: 'other.model-v2:0', instructions: 'Be precise.' })
    const list = await api(ctx.service, 'GET', '/v1/assistants?limit=100')
    expect(list.body.data.map((a: any) => a.id)).toContain(id)
    expect(list.body.data.every((a: any) => a.organization_id === 'org_test')).toBe(true)
    expect((await api(ctx.service, 'DELETE', `/v1/assistants/${id}`)).body).toEqual({ id, object: 'assistant.deleted', deleted: true })
    expect((await api(ctx.service, 'GET', `/v1/assistants/${id}`)).status).toBe(404)
    expect((await api(ctx.service, 'DELETE', `/v1/assistants/${id}`)).status).toBe(404)
  })

  it('400 for a bad assistant body and a bad list query', async () => {
    expect((await api(ctx.service, 'POST', '/v1/assistants', { name: '' })).body.error.message).toMatch(/^name/)
    expect((await api(ctx.service, 'POST', '/v1/assistants', { name: 'x', tools: [{ type: 'shell' }] })).body.error.message).toMatch(/^tools\.0\.type/)
    expect((await api(ctx.service, 'GET', '/v1/assistants?limit=1000')).status).toBe(400)
  })
})

describe('the scripted provider', () => {
  it('replays the seed answer end to end', async () => {
    const scripted = await startTestService(
      { SANDBOX_SLOT_UID_BASE: '62400', SANDBOX_WORKERS: '1' },
      { model: new ScriptedModel({ script: join(import.meta.dirname, '..', 'fixtures', 'scripted', 'compound-interest.json') }) },
    )
    try {
      const created = await api(scripted.service, 'POST', '/v1/assistants', { name: 'Demo', tools: [{ type: 'code_interpreter' }] })
      const res = await api(scripted.service, 'POST', '/v1/responses', {
        organization_id: 'org_test',
        assistant_id: created.body.id,
        tools: [{ type: 'code_interpreter', mode: 'auto' }],
        inputs: [{ role: 'user', content: 'What is the compound interest on $10,000 at 7% for 20 years?' }],
      })
      expect(res.body.status).toBe('completed')
      expect(res.body.output[0].outputs).toEqual([{ type: 'text', source: 'stdout', text: '$38,696.84' }])
      expect(res.body.output[1].content[0].text).toContain('$38,696.84')
    } finally {
      await scripted.stop()
    }
  })

  it('503 model_not_configured when no provider is set, saying what to set', async () => {
    const none = await startTestService({ SANDBOX_SLOT_UID_BASE: '62500', SANDBOX_WORKERS: '1' }, { model: null })
    try {
      const created = await api(none.service, 'POST', '/v1/assistants', { name: 'Demo' })
      const res = await api(none.service, 'POST', '/v1/responses', { assistant_id: created.body.id, inputs: [{ role: 'user', content: 'hi' }] })
      expect(res.status).toBe(503)
      expect(res.body.error.code).toBe('model_not_configured')
      expect(res.body.error.message).toContain('BEDROCK_MODEL_ID')
    } finally {
      await none.stop()
    }
  })
})
