import { readFileSync } from 'node:fs'
import { z } from 'zod'
import { type ContentBlock, ModelError, type ModelProvider, type ModelRequest, type ModelTurn } from '../../core/model'

/** One model turn of a script. `code` becomes a tool_use of the first offered tool with input {code}. */
export const ScriptTurn = z
  .strictObject({
    text: z.string().min(1).optional(),
    code: z.string().min(1).optional(),
    tool_use: z.strictObject({ name: z.string().min(1), input: z.record(z.string(), z.unknown()) }).optional(),
    /** Checked against the last tool result in the request: proves outputs reach the model. */
    expect: z.strictObject({ tool_result_contains: z.string() }).optional(),
  })
  .refine((t) => t.text !== undefined || t.code !== undefined || t.tool_use !== undefined, {
    message: 'a turn needs "text", "code" or "tool_use"',
  })
  .refine((t) => !(t.code !== undefined && t.tool_use !== undefined), { message: 'a turn has either "code" or "tool_use", not both' })
export type ScriptTurn = z.infer<typeof ScriptTurn>

export const Script = z.array(ScriptTurn).min(1, 'a script needs at least one turn')

/** Reads and validates a script file; errors name the file and the offending turn. */
export function loadScript(path: string): ScriptTurn[] {
  let raw: string
  try {
    raw = readFileSync(path, 'utf8')
  } catch (error) {
    throw new Error(`Scripted model file ${path} cannot be read: ${(error as Error).message}`)
  }
  let json: unknown
  try {
    json = JSON.parse(raw)
  } catch (error) {
    throw new Error(`Scripted model file ${path} is not valid JSON: ${(error as Error).message}`)
  }
  const parsed = Script.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const where = issue.path.length ? ` at ${issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('')}` : ''
    throw new Error(`Scripted model file ${path} is invalid${where}: ${issue.message}`)
  }
  return parsed.data
}

export interface ScriptedModelOptions {
  /** The turns, or the path of a JSON file of them. */
  script: ScriptTurn[] | string
  /** @default 'scripted' */
  defaultModel?: string
}

/**
 * Replays scripted model turns, for demos and tests. Stateless: the turn to play is the number of
 * assistant messages since the last user question, so one instance serves any number of runs.
 * It does not enforce modes (the run loop does): it plays what the script says, except that it
 * never calls a tool that was not offered.
 */
export class ScriptedModel implements ModelProvider {
  readonly name = 'scripted'
  readonly defaultModel: string
  private readonly turns: ScriptTurn[]

  constructor(options: ScriptedModelOptions) {
    this.turns = typeof options.script === 'string' ? loadScript(options.script) : Script.parse(options.script)
    this.defaultModel = options.defaultModel ?? 'scripted'
  }

  async converse(request: ModelRequest): Promise<ModelTurn> {
    request.signal?.throwIfAborted()
    const index = turnIndex(request)
    const turn = this.turns[index]
    const lastResult = lastToolResultText(request)
    if (!turn) return answer([{ type: 'text', text: summary(lastResult) }], request)
    if (turn.expect && !(lastResult ?? '').includes(turn.expect.tool_result_contains)) {
      throw new ModelError(
        `Scripted turn ${index + 1} expected the last tool result to contain ${JSON.stringify(turn.expect.tool_result_contains)}, ` +
          `but it was ${lastResult === undefined ? 'absent' : JSON.stringify(lastResult.slice(0, 300))}`,
        false,
      )
    }
    const content: ContentBlock[] = []
    const tool = request.tools[0]
    if (!tool) {
      // Interpreter off: only words, taken from this turn or the next one that has any.
      const text = turn.text ?? this.turns.slice(index + 1).find((t) => t.text)?.text ?? summary(lastResult)
      return answer([{ type: 'text', text }], request)
    }
    if (turn.text) content.push({ type: 'text', text: turn.text })
    if (turn.code !== undefined) content.push({ type: 'tool_use', id: `call_${index + 1}`, name: tool.name, input: { code: turn.code } })
    if (turn.tool_use) content.push({ type: 'tool_use', id: `call_${index + 1}`, name: turn.tool_use.name, input: turn.tool_use.input })
    return answer(content, request)
  }
}

function turnIndex(request: ModelRequest): number {
  let count = 0
  for (let i = request.messages.length - 1; i >= 0; i--) {
    const m = request.messages[i]
    if (m.role === 'assistant') count++
    else if (!m.content.some((b) => b.type === 'tool_result')) break
  }
  return count
}

function lastToolResultText(request: ModelRequest): string | undefined {
  for (let i = request.messages.length - 1; i >= 0; i--) {
    const blocks = request.messages[i].content
    for (let j = blocks.length - 1; j >= 0; j--) {
      const b = blocks[j]
      if (b.type === 'tool_result') {
        return b.content.map((c) => (c.type === 'text' ? c.text : `[image: ${c.data.byteLength} bytes PNG]`)).join('\n')
      }
    }
  }
  return undefined
}

function summary(lastResult: string | undefined): string {
  return lastResult === undefined ? 'The script has no more turns.' : `The result is: ${lastResult.trim()}`
}

/** Token counts are estimates (about 4 characters a token) so usage reporting has numbers to show. */
function answer(content: ContentBlock[], request: ModelRequest): ModelTurn {
  const chars = (value: unknown) => JSON.stringify(value, (_k, v) => (v instanceof Uint8Array ? `${v.byteLength}` : v)).length
  return {
    content,
    stopReason: content.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn',
    usage: {
      inputTokens: Math.ceil((request.system.length + chars(request.messages)) / 4),
      outputTokens: Math.ceil(chars(content) / 4),
    },
  }
}
