import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { codeInterpreterTool, CODE_TOOL_NAME, systemPrompt } from '../../functions/core/code-interpreter-tool'

// The tool description is what the model believes about the sandbox: every promise in it is
// checked against the sandbox's own configuration here.
const facts = { pythonVersion: '3.13', timeoutSeconds: 30 }
const tool = codeInterpreterTool(facts)
const zygote = readFileSync(join(import.meta.dirname, '..', '..', 'python-runtime', 'sandbox', 'zygote.py'), 'utf8')
const limits = readFileSync(join(import.meta.dirname, '..', '..', 'python-runtime', 'sandbox', 'config.py'), 'utf8')

describe('the code interpreter tool the model sees', () => {
  it.each(['numpy', 'pandas', 'scipy', 'sympy', 'matplotlib'])('names %s, which the zygote pre-imports', (pkg) => {
    expect(tool.description).toContain(pkg)
    expect(zygote).toMatch(new RegExp(`^import ${pkg}\\b`, 'm'))
  })

  it('states the time limit, which is the sandbox default', () => {
    expect(tool.description).toContain('30 seconds per call')
    expect(limits).toContain('"timeout_ms": 30_000')
    expect(codeInterpreterTool({ ...facts, timeoutSeconds: 5 }).description).toContain('5 seconds per call')
  })

  it('states the Python version it is given, no network and no installs', () => {
    expect(tool.description).toMatch(/^Run Python 3\.13 code/)
    expect(tool.description).toContain('no network access')
    expect(tool.description).toContain('no package installation')
  })

  it('takes exactly one required string field, code', () => {
    expect(tool.name).toBe(CODE_TOOL_NAME)
    expect(tool.inputSchema).toEqual({
      type: 'object',
      properties: { code: { type: 'string', description: 'Python source code to run.' } },
      required: ['code'],
      additionalProperties: false,
    })
  })
})

describe('the system prompt', () => {
  it('puts the assistant instructions first, then the tool guidance', () => {
    const prompt = systemPrompt('You are a finance assistant.', 'auto', facts)
    expect(prompt.startsWith('You are a finance assistant.\n\n')).toBe(true)
    expect(prompt).toContain('code_interpreter tool')
    expect(prompt).toContain('fix the code')
  })

  it('on: run code before answering; off: no code at all', () => {
    expect(systemPrompt('', 'on', facts)).toContain('Run code before you answer.')
    const off = systemPrompt('Be brief.', 'off', facts)
    expect(off).not.toContain('code_interpreter')
    expect(off).toContain('cannot run code')
  })
})
