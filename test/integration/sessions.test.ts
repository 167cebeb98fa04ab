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
  if (question === 'slow') return converseToolUse('t1', 'code_interpreter', { code: "import time\ntime.sleep(1.5)\nslow_done = True\nprint('slept')" })
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

const newSession = async (headers?: Record<string, string>) => {
  const res = await api(ctx.service, 'POST', '/v1/sessions', undefined, headers)
  expect(res.status).toBe(200)
  return res.body.id as string
}

describe('sessions of executions', () => {
  it('keep a DataFrame, a function and a class between executions of one session only', async () => {
    const session = await newSession()
    expect(session).toMatch(/^sess_/)
    const first = await execute(
      ctx.service,
      "import pandas as pd\nx = 41\ndf = pd.DataFrame({'v': [1, 2, 3]})\ndef inc(v): return v + 1\nclass Account:\n    def __init__(self, b): self.b = b\n    def grow(self, r): return round(self.b * (1 + r), 2)\nacct = Account(100)",
      { session_id: session },
    )
    expect(first.body.status).toBe('completed')
    expect(first.body.session_id).toBe(session)
    const second = await execute(ctx.service, "df.loc[0, 'v'] = 10\nprint(inc(x), int(df.v.sum()), acct.grow(0.05), Account(1).grow(1), type(acct).__name__)", { session_id: session })
    expect(second.body.outputs).toEqual([{ type: 'text', source: 'stdout', text: '42 15 105.0 2 Account' }])
    // The change made in the second block is what the third sees.
    expect((await execute(ctx.service, 'print(int(df.v.sum()))', { session_id: session })).body.outputs[0].text).toBe('15')
    const elsewhere = await execute(ctx.service, 'print(x)', { session_id: await newSession() })
    expect(elsewhere.body.outputs[0]).toMatchObject({ type: 'error', name: 'NameError' })
    const none = await execute(ctx.service, 'print(x)')
    expect(none.body.outputs[0]).toMatchObject({ type: 'error', name: 'NameError' })
    const info = await api(ctx.service, 'GET', `/v1/sessions/${session}`)
    expect(info.body).toMatchObject({ id: session, object: 'session', organization_id: 'org_test' })
    expect(info.body.expires_at - info.body.last_active_at).toBe(30 * 86_400) // the enterprise plan's idle limit
  })

  it('name what cannot be kept, and keep the rest', async () => {
    const session = await newSession()
    const res = await execute(ctx.service, "handle = open('notes.txt', 'w')\ngen = (i for i in range(3))\nkept = 7", { session_id: session })
    const notice = res.body.outputs.find((o: any) => o.type === 'text' && o.source === 'sandbox')
    expect(notice.text).toContain('handle')
    expect(notice.text).toContain('gen')
    expect((await execute(ctx.service, "print(kept, 'handle' in dir(), 'gen' in dir())", { session_id: session })).body.outputs[0].text).toBe('7 False False')
  })

  it('keep what a failed block defined before its error', async () => {
    const session = await newSession()
    await execute(ctx.service, 'kept = 7\n1 / 0', { session_id: session })
    expect((await execute(ctx.service, 'print(kept)', { session_id: session })).body.outputs[0].text).toBe('7')
  })

  it('let later blocks read the files earlier blocks wrote, without returning them again', async () => {
    const session = await newSession()
    const first = await execute(ctx.service, "_ = open('totals.txt', 'w').write('1200')", { session_id: session })
    expect(first.body.outputs).toEqual([expect.objectContaining({ type: 'file', filename: 'totals.txt' })])
    const second = await execute(ctx.service, "print(int(open('totals.txt').read()) * 2)\n_ = open('totals.txt', 'a').write('0')", { session_id: session })
    expect(second.body.outputs[0]).toEqual({ type: 'text', source: 'stdout', text: '2400' })
    // Changed: returned again as a new file, which later blocks see.
    expect(second.body.outputs[1]).toMatchObject({ type: 'file', filename: 'totals.txt', bytes: 5 })
    const third = await execute(ctx.service, "print(open('totals.txt').read())", { session_id: session })
    expect(third.body.outputs).toEqual([{ type: 'text', source: 'stdout', text: '12000' }])
    const info = await api(ctx.service, 'GET', `/v1/sessions/${session}`)
    expect(info.body.files).toEqual([{ filename: 'totals.txt', file_id: second.body.outputs[1].file_id }])
    // A session carries its 50 newest names; older ones leave it (their files stay).
    for (const start of [0, 20, 40]) {
      const many = await execute(ctx.service, `for i in range(${start}, ${start + 20}):\n    _ = open(f'part{i:02}.txt', 'w').write(str(i))`, { session_id: session })
      expect(many.body.outputs.filter((o: any) => o.type === 'file')).toHaveLength(20)
    }
    const listed = await execute(ctx.service, "import os\nnames = sorted(os.listdir('.'))\nprint(len(names), names[0], 'totals.txt' in names)", { session_id: session })
    expect(listed.body.outputs[0].text).toBe('50 part10.txt False')
  })

  it('carry a 10 MB DataFrame from block to block in S3, and delete the parts a new state replaced', async () => {
    const session = await newSession()
    await execute(ctx.service, 'import numpy as np, pandas as pd\ndf = pd.DataFrame(np.arange(1_310_720, dtype=float).reshape(-1, 10))', { session_id: session })
    const stored = (await ctx.service.store.getSession('org_test', session))!.state!.parts
    const large = stored.filter((p) => p.key)
    expect(large.map((p) => p.bytes)).toContain(10 * 1024 * 1024)
    for (const p of large) expect((await ctx.service.blobs.head(p.key!))?.bytes).toBe(p.bytes)
    const res = await execute(ctx.service, 'print(df.shape, int(df.values.sum()))', { session_id: session })
    expect(res.body.outputs).toEqual([{ type: 'text', source: 'stdout', text: `(131072, 10) ${(1_310_719 * 1_310_720) / 2}` }])
    // Unchanged: the same stored part, not a copy.
    expect((await ctx.service.store.getSession('org_test', session))!.state!.parts.filter((p) => p.key)).toEqual(large)
    await execute(ctx.service, 'df = df * 2', { session_id: session })
    for (const p of large) expect(await ctx.service.blobs.head(p.key!)).toBeUndefined()
    expect((await execute(ctx.service, 'print(int(df.values.sum()))', { session_id: session })).body.outputs[0].text).toBe(String(1_310_719 * 1_310_720))
  })

  it('keep a state larger than a table item (a big in-band string) through S3', async () => {
    const session = await newSession()
    await execute(ctx.service, "blob = 'x' * 400_000", { session_id: session })
    expect((await ctx.service.store.getSession('org_test', session))!.state!.parts.some((p) => p.key && p.bytes > 400_000)).toBe(true)
    expect((await execute(ctx.service, 'print(len(blob))', { session_id: session })).body.outputs[0].text).toBe('400000')
  })

  it('serve one request at a time: a concurrent one gets 409 session_busy, and no state is lost', async () => {
    const session = await newSession()
    await execute(ctx.service, 'import numpy as np\nbig = np.ones(1_000_000)\ncount = 0', { session_id: session })
    const slow = execute(ctx.service, 'import time\ntime.sleep(1.5)\ncount += 1\nbig = big * 2', { session_id: session })
    await new Promise((r) => setTimeout(r, 500))
    const busy = await execute(ctx.service, 'count += 100', { session_id: session })
    expect(busy.status).toBe(409)
    expect(busy.body.error.code).toBe('session_busy')
    expect((await slow).body.status).toBe('completed')
    const after = await execute(ctx.service, 'print(count, int(big.sum()))', { session_id: session })
    expect(after.body.outputs).toEqual([{ type: 'text', source: 'stdout', text: '1 2000000' }])
  })

  it('say so when the session was deleted while a block ran, and leave nothing behind', async () => {
    const session = await newSession()
    const running = execute(ctx.service, 'import time, numpy as np\ntime.sleep(1)\narr = np.ones(1_000_000)', { session_id: session })
    await new Promise((r) => setTimeout(r, 400))
    expect((await api(ctx.service, 'DELETE', `/v1/sessions/${session}`)).status).toBe(200)
    const res = await running
    expect(res.body.status).toBe('completed')
    expect(res.body.outputs.at(-1)).toMatchObject({ type: 'text', source: 'sandbox' })
    expect(res.body.outputs.at(-1).text).toContain('were not saved')
    expect(await ctx.service.store.getSession('org_test', session)).toBeUndefined()
  })

  it('404 for an unknown or another organization\'s session; 400 for a malformed id', async () => {
    const session = await newSession()
    await execute(ctx.service, "token = 'org_test only'", { session_id: session })
    const key = await ctx.service.issueKey('org_session_other')
    const theirs = { authorization: `Bearer ${key}` }
    const res = await api(ctx.service, 'POST', '/v1/executions', { organization_id: 'org_session_other', code: 'print(token)', session_id: session }, theirs)
    expect(res.status).toBe(404)
    expect(res.body.error.code).toBe('not_found')
    expect((await api(ctx.service, 'GET', `/v1/sessions/${session}`, undefined, theirs)).status).toBe(404)
    expect((await api(ctx.service, 'DELETE', `/v1/sessions/${session}`, undefined, theirs)).status).toBe(404)
    expect((await execute(ctx.service, '1', { session_id: 'sess_neverissued' })).status).toBe(404)
    const bad = await execute(ctx.service, '1', { session_id: 'nope' })
    expect(bad.status).toBe(400)
    expect(bad.body.error.message).toMatch(/^session_id/)
  })

  it('expire after their idle limit with 410 session_expired, and can be deleted', async () => {
    const session = await newSession()
    await execute(ctx.service, 'x = 1', { session_id: session })
    const record = (await ctx.service.store.getSession('org_test', session))!
    expect(record.state?.parts.length).toBeGreaterThan(0)
    // Last used eight days ago on a plan that keeps sessions for seven idle days.
    await ctx.service.store.putSession({ ...record, last_active_at: record.last_active_at - 8 * 86_400, idle_seconds: 7 * 86_400 })
    const expired = await execute(ctx.service, 'print(x)', { session_id: session })
    expect(expired.status).toBe(410)
    expect(expired.body.error.code).toBe('session_expired')
    expect(expired.body.error.message).toContain(session)
    expect((await ctx.service.store.getSession('org_test', session))!.state).toBeUndefined()
    const other = await newSession()
    expect((await api(ctx.service, 'DELETE', `/v1/sessions/${other}`)).body).toEqual({ id: other, object: 'session', deleted: true })
    expect((await execute(ctx.service, '1', { session_id: other })).status).toBe(404)
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
    const first = await respond('remember')
    const session = first.body.session_id
    expect(session).toMatch(/^sess_/)
    expect(first.body.output[0].outputs[0].text).toBe('kept')
    const second = await respond('recall', { session_id: session })
    expect(second.body.output[0].outputs[0].text).toBe('2468 3')
    const fresh = await respond('recall')
    expect(fresh.body.session_id).toMatch(/^sess_/)
    expect(fresh.body.output[0].outputs[0]).toMatchObject({ type: 'error', name: 'NameError' })
  })

  it('a background run holds its new session: a concurrent execution on it gets 409 until it ends', async () => {
    const queued = await respond('slow', { background: true })
    expect(queued.status).toBe(202)
    const session = queued.body.session_id
    await new Promise((r) => setTimeout(r, 400))
    const busy = await execute(ctx.service, 'print(1)', { session_id: session })
    expect(busy.status).toBe(409)
    expect(busy.body.error.code).toBe('session_busy')
    let status = 'queued'
    for (let i = 0; i < 100 && (status === 'queued' || status === 'in_progress'); i++) {
      await new Promise((r) => setTimeout(r, 100))
      status = (await api(ctx.service, 'GET', `/v1/responses/${queued.body.id}`)).body.status
    }
    expect(status).toBe('completed')
    expect((await execute(ctx.service, 'print(slow_done)', { session_id: session })).body.outputs).toEqual([{ type: 'text', source: 'stdout', text: 'True' }])
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
    const sessionTheft = await api(
      ctx.service,
      'POST',
      '/v1/responses',
      { assistant_id: otherAssistant, inputs: [{ role: 'user', content: 'recall' }], session_id: mine.body.session_id },
      { authorization: `Bearer ${key}` },
    )
    expect(sessionTheft.status).toBe(404)
  })
})
