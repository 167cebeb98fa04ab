import { BedrockRuntimeClient } from '@aws-sdk/client-bedrock-runtime'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BedrockModel } from '../../functions/adapters/models/bedrock'
import { type ConverseServer, converseText, converseToolUse, type RecordedConverse, startConverseServer } from '../support/converse-server'
import { api, execute, startTestService } from '../support/local'

let ctx: Awaited<ReturnType<typeof startTestService>>
let converse: ConverseServer

const lastUserText = (r: RecordedConverse): string =>
  r.body.messages.filter((m: any) => m.role === 'user' && m.content.some((c: any) => c.text)).at(-1)?.content.find((c: any) => c.text)?.text ?? ''
const resultText = (r: RecordedConverse) =>
  r.body.messages.flatMap((m: any) => m.content.filter((c: any) => c.toolResult)).at(-1)?.toolResult.content.map((c: any) => c.text ?? '').join('') ?? ''

function responder(r: RecordedConverse) {
  const question = lastUserText(r)
  const answered = r.body.messages.at(-1).content.some((c: any) => c.toolResult)
  if (answered) return converseText(`Done: ${resultText(r).trim()}`)
  if (question === 'remember') return converseToolUse('t1', 'code_interpreter', { code: "import pandas as pd\nsecret = 1234\ndf = pd.DataFrame({'a': [1, 2]})\ndef twice(v): return 2 * v\nprint('kept')" })
  if (question === 'recall') return converseToolUse('t1', 'code_interpreter', { code: 'print(twice(secret), int(df.a.sum()))' })
  return converseText('?')
}

beforeAll(async () => {
  converse = await startConverseServer(responder)
  const client = new BedrockRuntimeClient({ endpoint: converse.url, region: 'us-east-1', credentials: { accessKeyId: 't', secretAccessKey: 't' }, maxAttempts: 1 })
  ctx = await startTestService({ SANDBOX_SLOT_UID_BASE: '62800' }, { model: new BedrockModel({ client, defaultModel: 'test.model-v1:0', baseDelayMs: 1 }) })
})
afterAll(async () => {
  await ctx?.stop()
  await converse?.close()
})

describe('sessions of executions', () => {
  it('keep variables, functions and DataFrames between executions of one session only', async () => {
    const first = await execute(ctx.service, "import pandas as pd\nx = 41\ndf = pd.DataFrame({'v': [1, 2, 3]})\ndef inc(v): return v + 1", { session_id: 'sess_exec1' })
    expect(first.body.status).toBe('completed')
    expect(first.body.session_id).toBe('sess_exec1')
    const second = await execute(ctx.service, 'print(inc(x), int(df.v.sum()))', { session_id: 'sess_exec1' })
    expect(second.body.outputs).toEqual([{ type: 'text', source: 'stdout', text: '42 6' }])
    const elsewhere = await execute(ctx.service, 'print(x)', { session_id: 'sess_exec2' })
    expect(elsewhere.body.outputs[0]).toMatchObject({ type: 'error', name: 'NameError' })
    const none = await execute(ctx.service, 'print(x)')
    expect(none.body.outputs[0]).toMatchObject({ type: 'error', name: 'NameError' })
  })

  it('are separate per organization even with the same session id', async () => {
    await execute(ctx.service, "token = 'org_test only'", { session_id: 'sess_shared' })
    const key = await ctx.service.issueKey('org_session_other')
    const res = await api(ctx.service, 'POST', '/v1/executions', { organization_id: 'org_session_other', code: 'print(token)', session_id: 'sess_shared' }, { authorization: `Bearer ${key}` })
    expect(res.body.outputs[0]).toMatchObject({ type: 'error', name: 'NameError' })
  })

  it('keep what a failed block defined before its error, and say when state is too large to keep', async () => {
    await execute(ctx.service, 'kept = 7\n1 / 0', { session_id: 'sess_fail' })
    expect((await execute(ctx.service, 'print(kept)', { session_id: 'sess_fail' })).body.outputs[0].text).toBe('7')
    const big = await execute(ctx.service, "blob = 'x' * 400_000", { session_id: 'sess_big' })
    expect(big.body.outputs.at(-1)).toMatchObject({ type: 'text', source: 'sandbox' })
    expect(big.body.outputs.at(-1).text).toContain('larger than the session store keeps')
  })

  it('400 for a malformed session id', async () => {
    const res = await execute(ctx.service, '1', { session_id: 'nope' })
    expect(res.status).toBe(400)
    expect(res.body.error.message).toMatch(/^session_id/)
  })
})

describe('sessions of responses', () => {
  let assistant: string
  beforeAll(async () => {
    assistant = (await api(ctx.service, 'POST', '/v1/assistants', { name: 'S', tools: [{ type: 'code_interpreter' }] })).body.id
  })
  const respond = (content: string, extra: Record<string, unknown> = {}) =>
    api(ctx.service, 'POST', '/v1/responses', { assistant_id: assistant, inputs: [{ role: 'user', content }], ...extra })

  it('every response has a session; naming it carries Python state to the next response', async () => {
    const first = await respond('remember', { session_id: 'sess_resp1' })
    expect(first.body.session_id).toBe('sess_resp1')
    expect(first.body.output[0].outputs[0].text).toBe('kept')
    const second = await respond('recall', { session_id: 'sess_resp1' })
    expect(second.body.output[0].outputs[0].text).toBe('2468 3')
    const fresh = await respond('recall')
    expect(fresh.body.session_id).toMatch(/^sess_/)
    expect(fresh.body.output[0].outputs[0]).toMatchObject({ type: 'error', name: 'NameError' })
  })

  it('previous_response_id continues the conversation and its state', async () => {
    const first = await respond('remember')
    const next = await respond('recall', { previous_response_id: first.body.id })
    expect(next.body.previous_response_id).toBe(first.body.id)
    expect(next.body.session_id).toBe(first.body.session_id)
    expect(next.body.output[0].outputs[0].text).toBe('2468 3')
    // The model saw the earlier question and answer before the new question.
    const sent = converse.requests.findLast((r) => lastUserText(r) === 'recall')!
    const texts = sent.body.messages.map((m: any) => m.content.find((c: any) => c.text)?.text).filter(Boolean)
    expect(texts.slice(0, 3)).toEqual(['remember', 'Done: kept', 'recall'])
  })

  it('400 for both session_id and previous_response_id; 404 for another organization\'s response', async () => {
    const both = await respond('recall', { session_id: 'sess_x', previous_response_id: 'resp_x' })
    expect(both.status).toBe(400)
    expect(both.body.error.message).toMatch(/^previous_response_id/)
    const mine = await respond('remember')
    const key = await ctx.service.issueKey('org_session_thief')
    const otherAssistant = (await api(ctx.service, 'POST', '/v1/assistants', { name: 'T', tools: [{ type: 'code_interpreter' }] }, { authorization: `Bearer ${key}` })).body.id
    const stolen = await api(
      ctx.service,
      'POST',
      '/v1/responses',
      { assistant_id: otherAssistant, inputs: [{ role: 'user', content: 'recall' }], previous_response_id: mine.body.id },
      { authorization: `Bearer ${key}` },
    )
    expect(stolen.status).toBe(404)
    expect(stolen.body.error.code).toBe('not_found')
  })
})
