import { execFileSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, test } from 'vitest'
import { loadScript, ScriptedModel, type ScriptTurn } from '../../functions/adapters/models/scripted'
import { type ChatMessage, ModelError, type ModelRequest, type ModelTurn } from '../../functions/core/model'

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/scripted/${name}`, import.meta.url))
const PYTHON_TOOL = { name: 'code_interpreter', description: 'Run Python.', inputSchema: { type: 'object', properties: { code: { type: 'string' } } } }
const question: ChatMessage = { role: 'user', content: [{ type: 'text', text: 'What does $10,000 at 7% for 20 years grow to?' }] }

const ask = (messages: ChatMessage[], overrides: Partial<ModelRequest> = {}): ModelRequest => ({
  model: '',
  system: 'sys',
  messages,
  tools: [PYTHON_TOOL],
  toolChoice: 'auto',
  ...overrides,
})

/** Plays a whole run the way the loop does, answering each tool_use with `run(code)`. */
async function play(model: ScriptedModel, run: (code: string) => string, overrides: Partial<ModelRequest> = {}) {
  const messages: ChatMessage[] = [question]
  const turns: ModelTurn[] = []
  for (let i = 0; i < 10; i++) {
    const turn = await model.converse(ask(messages, overrides))
    turns.push(turn)
    messages.push({ role: 'assistant', content: turn.content })
    const uses = turn.content.filter((b) => b.type === 'tool_use')
    if (!uses.length) break
    messages.push({
      role: 'user',
      content: uses.map((u) => ({
        type: 'tool_result' as const,
        toolUseId: u.id,
        status: 'success' as const,
        content: [{ type: 'text' as const, text: run(String(u.input.code)) }],
      })),
    })
  }
  return turns
}

describe('ScriptedModel', () => {
  test('compound-interest.json: a code turn, then the text once the output reached the model', async () => {
    // Prepare
    const model = new ScriptedModel({ script: fixture('compound-interest.json') })

    // Act
    const turns = await play(model, () => '$38,696.84\n')

    // Assess
    expect(turns).toHaveLength(2)
    expect(turns[0].stopReason).toBe('tool_use')
    expect(turns[0].content).toEqual([
      { type: 'tool_use', id: 'call_1', name: 'code_interpreter', input: { code: expect.stringContaining("print(f'${result:,.2f}')") } },
    ])
    expect(turns[1]).toMatchObject({
      stopReason: 'end_turn',
      content: [{ type: 'text', text: '$10,000 at 7% for 20 years grows to $38,696.84.' }],
    })
    expect(turns[1].usage.inputTokens).toBeGreaterThan(0)
  })

  test('an expectation that the tool output does not meet is a clear ModelError', async () => {
    const model = new ScriptedModel({ script: fixture('compound-interest.json') })
    const error = await play(model, () => 'NameError: name result is not defined').catch((e) => e)
    expect(error).toBeInstanceOf(ModelError)
    expect(error.message).toContain('Scripted turn 2 expected the last tool result to contain "38,696.84"')
    expect(error.message).toContain('NameError')
  })

  test('two-blocks.json: text and code in one turn, three turns in all', async () => {
    const model = new ScriptedModel({ script: fixture('two-blocks.json') })
    const outputs = ['(3, 2)\n', 'total: 300.00\n']
    const turns = await play(model, () => outputs.shift() ?? '')
    expect(turns.map((t) => t.stopReason)).toEqual(['tool_use', 'tool_use', 'end_turn'])
    expect(turns[1].content[0]).toEqual({ type: 'text', text: 'Now the total, reusing df from the first block.' })
    expect(turns[1].content[1]).toMatchObject({ type: 'tool_use', id: 'call_2', input: { code: expect.stringContaining("df['amount']") } })
  })

  test('the fixtures\' code, run in one Python process, prints what the scripts expect', () => {
    // Both fixtures are demo inputs: prove their expectations hold against real Python (with pandas).
    for (const name of ['compound-interest.json', 'two-blocks.json']) {
      const turns = loadScript(fixture(name))
      const blocks = turns.flatMap((t) => (t.code ? [t.code] : []))
      const program = `import json, sys\nns = {}\nfor block in json.load(sys.stdin):\n    exec(block, ns)\n    print('\\x1e', flush=True)`
      const out = execFileSync(process.env.PYTHON ?? '/usr/bin/python3', ['-c', program], { input: JSON.stringify(blocks) }).toString()
      const perBlock = out.split('\x1e\n')
      // A turn's expectation is about the output of the latest block run before it.
      let latest = -1
      for (const turn of turns) {
        if (turn.expect) expect(perBlock[latest], `${name}`).toContain(turn.expect.tool_result_contains)
        if (turn.code) latest++
      }
    }
  })

  test('when the script runs out it summarizes the last tool result', async () => {
    const model = new ScriptedModel({ script: [{ code: 'print(6*7)' }] })
    const turns = await play(model, () => '42\n')
    expect(turns[1]).toMatchObject({ stopReason: 'end_turn', content: [{ type: 'text', text: 'The result is: 42' }] })
  })

  test('with no tools offered it never emits tool_use; a code-only turn uses the script\'s next text', async () => {
    const model = new ScriptedModel({ script: fixture('compound-interest.json') })
    const turn = await model.converse(ask([question], { tools: [], toolChoice: 'required' }))
    expect(turn).toMatchObject({
      stopReason: 'end_turn',
      content: [{ type: 'text', text: '$10,000 at 7% for 20 years grows to $38,696.84.' }],
    })
  })

  test('with tools offered and a text-only turn it answers in text even when a tool is required', async () => {
    const model = new ScriptedModel({ script: [{ text: 'Paris.' }] })
    const turn = await model.converse(ask([question], { toolChoice: 'required' }))
    expect(turn).toMatchObject({ stopReason: 'end_turn', content: [{ type: 'text', text: 'Paris.' }] })
  })

  test('a tool_use turn is replayed as written', async () => {
    const model = new ScriptedModel({ script: [{ tool_use: { name: 'code_interpreter', input: { code: '1', files: [] } } }] })
    const turn = await model.converse(ask([question]))
    expect(turn.content).toEqual([{ type: 'tool_use', id: 'call_1', name: 'code_interpreter', input: { code: '1', files: [] } }])
  })

  test('the turn counts from the latest user question, so earlier conversation does not shift it', async () => {
    const model = new ScriptedModel({ script: fixture('compound-interest.json') })
    const history: ChatMessage[] = [
      { role: 'user', content: [{ type: 'text', text: 'hi' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'hello' }] },
      question,
    ]
    const turn = await model.converse(ask(history))
    expect(turn.stopReason).toBe('tool_use')
  })

  describe('loadScript', () => {
    const write = (content: string) => {
      const path = join(mkdtempSync(join(tmpdir(), 'script-')), 'script.json')
      writeFileSync(path, content)
      return path
    }

    test('reads and validates the fixtures', () => {
      expect(loadScript(fixture('two-blocks.json'))).toHaveLength(3)
    })

    test.each<[string, string, RegExp]>([
      ['not JSON', '{nope', /is not valid JSON/],
      ['an empty script', '[]', /invalid: a script needs at least one turn/],
      ['a turn with nothing to say', '[{"text": "a"}, {"expect": {"tool_result_contains": "x"}}]', /invalid at \[1\]: a turn needs "text", "code" or "tool_use"/],
      ['an unknown key', '[{"txt": "a"}]', /invalid at \[0\]/],
      ['code and tool_use together', '[{"code": "1", "tool_use": {"name": "x", "input": {}}}]', /either "code" or "tool_use"/],
    ])('rejects %s with a message naming the file', (_name, content, message) => {
      const path = write(content)
      expect(() => loadScript(path)).toThrow(message)
      expect(() => loadScript(path)).toThrow(path)
    })

    test('a missing file names the path', () => {
      expect(() => loadScript('/nonexistent/script.json')).toThrow(/\/nonexistent\/script\.json cannot be read/)
    })

    test('an inline script is validated too', () => {
      expect(() => new ScriptedModel({ script: [{}] as ScriptTurn[] })).toThrow(/a turn needs/)
    })
  })
})
