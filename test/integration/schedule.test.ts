import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { ScriptedModel } from '../../functions/adapters/models/scripted'
import type { Assistant, ResponseObject } from '../../functions/contract/responses'
import type { ModelProvider } from '../../functions/core/model'
import { ModelError } from '../../functions/core/model'
import { sandboxUrlLifetime, UploadSlots } from '../../functions/core/workspace'
import type { ApiDeps } from '../../functions/handlers/deps'
import { projectPath } from '../../lib/paths'
import { api, startTestService, TEST_KEY } from '../support/local'

const run = promisify(execFile)
const QUESTION = 'What is the compound interest on $10,000 at 7% for 20 years?'

/** bin/schedule.ts as a child process (async: the server it calls runs in this process). */
async function runSchedule(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'bin/schedule.ts', ...args], {
      cwd: projectPath(),
      env: { ...process.env, LOCAL_API_KEY: '' },
      timeout: 60_000,
    })
    return { code: 0, stdout, stderr }
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string }
    if (typeof e.code !== 'number') throw error
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

describe('bin/schedule.ts against the local service', () => {
  let ctx: Awaited<ReturnType<typeof startTestService>>
  let dir: string
  let file: string
  let assistantId: string

  beforeAll(async () => {
    ctx = await startTestService(
      { SANDBOX_SLOT_UID_BASE: '62700', SANDBOX_WORKERS: '1' },
      { model: new ScriptedModel({ script: join(import.meta.dirname, '..', 'fixtures', 'scripted', 'compound-interest.json') }) },
    )
    const created = await api(ctx.service, 'POST', '/v1/assistants', { name: 'Nightly', tools: [{ type: 'code_interpreter' }] })
    expect(created.status).toBe(200)
    assistantId = created.body.id
    dir = mkdtempSync(join(tmpdir(), 'sci-schedule-'))
    file = join(dir, 'schedules.json')
    const schedule = (name: string, assistant: string) => ({
      name,
      schedule: 'cron(0 6 * * ? *)',
      timezone: 'Europe/Berlin',
      organizationId: 'org_test',
      assistantId: assistant,
      inputs: [{ role: 'user', content: QUESTION }],
      tools: [{ type: 'code_interpreter', mode: 'auto' }],
    })
    writeFileSync(file, JSON.stringify({ schedules: [schedule('nightly-interest', assistantId), schedule('ghost', 'asst_missing')] }))
  })

  afterAll(async () => {
    await ctx?.stop()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  it('runs the schedule once and the response is listed under its name', async () => {
    const result = await runSchedule(['nightly-interest', '--file', file, '--url', ctx.service.url, '--key', TEST_KEY])
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    const id = /^response: (\S+)$/m.exec(result.stdout)?.[1]
    expect(id).toBeDefined()
    expect(result.stdout).toMatch(/^status: completed$/m)
    expect(result.stdout).toMatch(/^message: .*\$38,696\.84/m)

    const listed = await api(ctx.service, 'GET', '/v1/responses?schedule=nightly-interest')
    expect(listed.status).toBe(200)
    expect(listed.body.data.map((r: ResponseObject) => r.id)).toEqual([id])
    const stored = listed.body.data[0] as ResponseObject
    expect(stored).toMatchObject({ schedule: 'nightly-interest', status: 'completed', assistant_id: assistantId })
    expect(stored.output[0]).toMatchObject({ type: 'code_interpreter_call', outputs: [{ type: 'text', source: 'stdout', text: '$38,696.84' }] })
    expect(JSON.stringify(stored.output.at(-1))).toContain('$38,696.84')
    // Another schedule's name lists nothing.
    expect((await api(ctx.service, 'GET', '/v1/responses?schedule=other')).body.data).toEqual([])
  })

  it('accepts the stack URL with its /v1 suffix', async () => {
    const result = await runSchedule(['nightly-interest', '--file', file, '--url', `${ctx.service.url}/v1/`, '--key', TEST_KEY])
    expect(result.code).toBe(0)
    expect((await api(ctx.service, 'GET', '/v1/responses?schedule=nightly-interest')).body.data).toHaveLength(2)
  })

  it("exits non-zero with the API's error code and message", async () => {
    const missing = await runSchedule(['ghost', '--file', file, '--url', ctx.service.url, '--key', TEST_KEY])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/HTTP 404 not_found: No assistant "asst_missing"/)

    const badKey = await runSchedule(['nightly-interest', '--file', file, '--url', ctx.service.url, '--key', 'not_a_real_key_0000'])
    expect(badKey.code).toBe(1)
    expect(badKey.stderr).toMatch(/HTTP 401 unauthorized:/)
  })

  it('explains a wrong name, a missing key and a bad file', async () => {
    const unknown = await runSchedule(['nope', '--file', file, '--key', TEST_KEY])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(/no schedule "nope" in .*schedules: nightly-interest, ghost/)

    const noKey = await runSchedule(['nightly-interest', '--file', file])
    expect(noKey.code).toBe(2)
    expect(noKey.stderr).toMatch(/pass --key KEY or set LOCAL_API_KEY/)

    const bad = join(dir, 'bad.json')
    writeFileSync(bad, JSON.stringify([{ name: 'x', schedule: 'cron(0 6 * * *)', organizationId: 'org_test', assistantId, inputs: [{ role: 'user', content: 'hi' }] }]))
    const invalid = await runSchedule(['x', '--file', bad, '--key', TEST_KEY])
    expect(invalid.code).toBe(2)
    expect(invalid.stderr).toMatch(/0\.schedule: cron\(\.\.\.\) has 6 fields/)
  })
})

// --- The Lambda handler (functions/handlers/schedule.ts), without AWS ---------------------------

const ENV = { SANDBOX_FUNCTION_NAME: 'sandbox-fn', TABLE_NAME: 'table', BUCKET_NAME: 'bucket', AWS_REGION: 'us-east-1', MODEL_PROVIDER: '', BEDROCK_MODEL_ID: '' }

/** Imports the module the way Lambda does (its deps are built at import) with a harmless env. */
async function loadModule() {
  for (const [k, v] of Object.entries(ENV)) vi.stubEnv(k, v)
  return import('../../functions/handlers/schedule')
}

const ASSISTANT: Assistant = {
  id: 'asst_1',
  object: 'assistant',
  organization_id: 'org_a',
  name: 'A',
  instructions: '',
  tools: [],
  file_ids: [],
  created_at: 0,
  updated_at: 0,
}

/** In-memory stand-ins for the ports createResponse uses; nothing reaches AWS. */
function fakeDeps(model: ModelProvider) {
  const stored: ResponseObject[] = []
  const getAssistant = async (org: string, id: string) => (org === ASSISTANT.organization_id && id === ASSISTANT.id ? ASSISTANT : undefined)
  const store = {
    getAssistant,
    putResponse: async (r: ResponseObject) => void stored.push(r),
    getResponse: async () => undefined,
    getConversation: async () => undefined,
    getSession: async () => undefined,
    claimSession: async (session: unknown) => session,
    putSession: async () => true,
    deleteSession: async () => false,
    getFile: async () => undefined,
  }
  const hot = { getAssistant, getOrganization: async () => undefined, tryConsumeExecution: async () => true }
  const config = {
    sandboxFunctionName: 'x',
    tenantIsolation: true,
    tableName: 't',
    codeTimeoutMs: 30_000,
    pythonVersion: '3.13',
    maxCodeBlocksPerResponse: 10,
    responseDeadlineMs: 60_000,
    plans: { standard: { code_interpreter: true, max_code_blocks_per_response: 10, max_executions_per_day: 100 } },
    defaultPlan: 'standard',
    keyCacheTtlMs: 0,
    usageReservationBatch: 1,
  }
  const sandbox = { run: async () => { throw new Error('no sandbox in this test') } }
  const blobs = { presign: async (_m: string, key: string) => ({ url: `http://127.0.0.1:9/${key}`, expiresAt: Math.floor(Date.now() / 1000) + 900 }), delete: async () => undefined }
  const slots = new UploadSlots(blobs as never, sandboxUrlLifetime(55_000))
  const deps = { config, store, hot, sandbox, model, blobs, slots, clock: { now: () => new Date() } } as unknown as ApiDeps
  return { deps, stored }
}

const event = { schedule: 'nightly', organization_id: 'org_a', assistant_id: 'asst_1', inputs: [{ role: 'user', content: 'Hi' }] }

describe('the schedule Lambda handler', () => {
  afterEach(() => vi.unstubAllEnvs())

  it('builds its deps at import from the function environment', async () => {
    const mod = await loadModule()
    expect(typeof mod.handler).toBe('function')
    // Validation happens before any AWS call, so a bad event fails here without credentials.
    await expect(mod.handler({})).rejects.toThrow(mod.ScheduleInputError)
  })

  it('rejects an invalid event with a message naming the field and saying a retry cannot help', async () => {
    const { parseScheduleEvent, ScheduleInputError } = await loadModule()
    const cases: [unknown, RegExp][] = [
      [null, /event: /],
      [{ ...event, organization_id: undefined }, /organization_id: /],
      [{ ...event, schedule: undefined }, /schedule: /],
      [{ ...event, schedule: 'bad name' }, /schedule: letters, digits/],
      [{ ...event, assistant_id: 'x' }, /assistant_id: must look like asst_/],
      [{ ...event, inputs: [] }, /inputs: needs at least one message/],
      [{ ...event, inputs: [{ role: 'assistant', content: 'x' }] }, /inputs: the last input must come from the user/],
      [{ ...event, tools: [{ type: 'shell' }] }, /tools\.0\.type: unknown tool type/],
      [{ ...event, extra: 1 }, /extra: /],
    ]
    for (const [input, message] of cases) {
      let thrown: unknown
      try {
        parseScheduleEvent(input)
      } catch (error) {
        thrown = error
      }
      expect(thrown, JSON.stringify(input)).toBeInstanceOf(ScheduleInputError)
      expect((thrown as Error).message).toMatch(/^Invalid scheduled event \(not retryable/)
      expect((thrown as Error).message).toMatch(message)
    }
    expect(parseScheduleEvent(event)).toMatchObject(event)
  })

  it('stores a completed run tagged with the schedule and returns its id', async () => {
    const { createScheduleHandler } = await loadModule()
    const { deps, stored } = fakeDeps(new ScriptedModel({ script: [{ text: 'All good.' }] }))
    const lines: string[] = []
    const result = await createScheduleHandler(deps, (l) => lines.push(l))(event)
    expect(stored).toHaveLength(1)
    expect(stored[0]).toMatchObject({ schedule: 'nightly', status: 'completed', organization_id: 'org_a' })
    expect(result).toEqual({ schedule: 'nightly', response_id: stored[0]!.id, status: 'completed' })
    expect(JSON.parse(lines[0]!)).toMatchObject({ schedule: 'nightly', status: 'completed' })
  })

  it('stores a failed run, then throws so the run is retried', async () => {
    const { createScheduleHandler, ScheduledRunFailedError } = await loadModule()
    const failing: ModelProvider = {
      name: 'broken',
      defaultModel: 'm',
      converse: async () => {
        throw new ModelError('the model is down', true)
      },
    }
    const { deps, stored } = fakeDeps(failing)
    const run = createScheduleHandler(deps, () => {})(event)
    await expect(run).rejects.toThrow(ScheduledRunFailedError)
    await expect(run).rejects.toThrow(/nightly.*failed: response resp_\S+ \(model_error: the model is down\)/)
    expect(stored).toHaveLength(1)
    expect(stored[0]).toMatchObject({ schedule: 'nightly', status: 'failed' })
  })

  it("refuses another organization's assistant (the caller is the schedule's organization)", async () => {
    const { createScheduleHandler } = await loadModule()
    const { deps, stored } = fakeDeps(new ScriptedModel({ script: [{ text: 'x' }] }))
    await expect(createScheduleHandler(deps, () => {})({ ...event, organization_id: 'org_b' })).rejects.toThrow(/No assistant "asst_1"/)
    expect(stored).toEqual([])
  })
})
