/**
 * Runs one configured scheduled analysis once, through the HTTP API, so a team can try it
 * before (or after) deploying:
 *
 *   node --import tsx bin/schedule.ts <name> [--url URL] [--key KEY] [--file schedules.json]
 *
 * The schedule comes from cdk.json's context `interpreter.schedules`, or from --file: a JSON
 * file holding either that array or an object with a `schedules` array (same entry shape).
 * It POSTs the schedule's request, tagged `schedule: <name>`, to `<url>/v1/responses`:
 * url defaults to the local server (http://127.0.0.1:8787), key to $LOCAL_API_KEY. For the
 * deployed stack pass the stack's ApiUrl output (with or without its trailing /v1) and a key.
 *
 * Prints the response id, status and final message. Exit codes: 0 completed or incomplete,
 * 1 the response failed or the API answered an error (its code and message are printed),
 * 2 bad usage or configuration.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { CONFIG_CONTEXT_KEY, parseSchedules, type ScheduleConfig, scheduleEvent } from '../lib/config'
import { projectPath } from '../lib/paths'

const DEFAULT_URL = 'http://127.0.0.1:8787'

function fail(message: string, code = 2): never {
  console.error(message)
  process.exit(code)
}

function readJson(path: string): unknown {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    fail(`cannot read ${path}: ${(error as Error).message}`)
  }
  try {
    return JSON.parse(text)
  } catch (error) {
    fail(`${path} is not valid JSON: ${(error as Error).message}`)
  }
}

function loadSchedules(file: string | undefined): { schedules: ScheduleConfig[]; where: string } {
  try {
    if (file) {
      const path = resolve(file)
      const raw = readJson(path) as { schedules?: unknown } | unknown[]
      const list = Array.isArray(raw) ? raw : raw && typeof raw === 'object' ? raw.schedules : undefined
      if (!Array.isArray(list)) fail(`${path}: expected an array of schedules or an object with a "schedules" array`)
      return { schedules: parseSchedules(list, path, Array.isArray(raw) ? [] : ['schedules']), where: path }
    }
    const path = projectPath('cdk.json')
    const context = (readJson(path) as { context?: Record<string, { schedules?: unknown } | undefined> }).context
    return {
      schedules: parseSchedules(context?.[CONFIG_CONTEXT_KEY]?.schedules ?? [], path),
      where: `${path} (context ${CONFIG_CONTEXT_KEY}.schedules)`,
    }
  } catch (error) {
    fail((error as Error).message)
  }
}

/** The API base without a trailing slash or /v1, so both the stage URL and the ApiUrl output work. */
function apiBase(url: string): string {
  return url.replace(/\/+$/, '').replace(/\/v1$/, '')
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { url: { type: 'string' }, key: { type: 'string' }, file: { type: 'string' } },
  })
  const name = positionals[0]
  if (!name || positionals.length > 1) fail('usage: node --import tsx bin/schedule.ts <name> [--url URL] [--key KEY] [--file FILE]')
  const { schedules, where } = loadSchedules(values.file)
  const schedule = schedules.find((s) => s.name === name)
  if (!schedule) {
    fail(`no schedule "${name}" in ${where}; schedules: ${schedules.map((s) => s.name).join(', ') || '(none)'}`)
  }
  const key = values.key ?? process.env.LOCAL_API_KEY
  if (!key) fail('no API key: pass --key KEY or set LOCAL_API_KEY')
  const url = `${apiBase(values.url ?? DEFAULT_URL)}/v1/responses`

  console.log(`running schedule ${name} (${schedule.organizationId}, ${schedule.assistantId}) against ${url}`)
  let res: Response
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify(scheduleEvent(schedule)),
    })
  } catch (error) {
    fail(`cannot reach ${url}: ${(error as Error).cause ?? (error as Error).message}`, 1)
  }
  const text = await res.text()
  let body: any
  try {
    body = JSON.parse(text)
  } catch {
    body = undefined
  }
  if (!res.ok) {
    const error = body?.error
    fail(error ? `HTTP ${res.status} ${error.code}: ${error.message}` : `HTTP ${res.status}: ${text.slice(0, 500)}`, 1)
  }
  const message = [...(body.output ?? [])].reverse().find((item: any) => item.type === 'message')
  const finalText = message?.content?.map((c: any) => c.text).join('') ?? ''
  console.log(`response: ${body.id}`)
  console.log(`status: ${body.status}`)
  if (body.error) console.log(`error: ${body.error.code}: ${body.error.message}`)
  if (body.incomplete_details) console.log(`incomplete: ${body.incomplete_details.reason}`)
  console.log(`message: ${finalText || '(none)'}`)
  if (body.status === 'failed') process.exitCode = 1
}

await main()
