/**
 * What the model is told about the code interpreter. This text is a reviewed artefact:
 * test/unit/code-interpreter-tool.test.ts checks every promise in it against the sandbox's
 * real limits and packages. Change both together.
 */
import type { ModelTool } from './model'

export const CODE_TOOL_NAME = 'code_interpreter'

export interface ToolFacts {
  pythonVersion: string
  timeoutSeconds: number
}

export function codeInterpreterTool(facts: ToolFacts): ModelTool {
  return {
    name: CODE_TOOL_NAME,
    description:
      `Run Python ${facts.pythonVersion} code in an isolated sandbox and get its output. Use it for ` +
      'arithmetic, statistics, financial calculations, data analysis, parsing, sorting, and anything ' +
      'where exact computation beats estimation. Variables, imports and functions persist between calls ' +
      'within this conversation. Available: the standard library, numpy, pandas, scipy, sympy and matplotlib. ' +
      "The user's files are in the working directory under their own names (read them with relative paths, " +
      "e.g. pd.read_csv('sales.csv'); they are read-only). " +
      'Output: print() what you need; the value of a final bare expression is shown; matplotlib figures ' +
      'are returned as images; files written to the working directory are returned to the user as files ' +
      'and stay readable in later calls. ' +
      `Limits: ${facts.timeoutSeconds} seconds per call, no network access, no package installation.`,
    inputSchema: {
      type: 'object',
      properties: { code: { type: 'string', description: 'Python source code to run.' } },
      required: ['code'],
      additionalProperties: false,
    },
  }
}

/** The system prompt: the assistant's own instructions first, then the tool's guidance. */
export function systemPrompt(
  instructions: string,
  mode: 'auto' | 'on' | 'off',
  facts: ToolFacts,
  files: { name: string; bytes: number; mime_type: string }[] = [],
): string {
  const parts = [instructions.trim()].filter(Boolean)
  if (mode === 'off') {
    parts.push('You cannot run code in this conversation; answer directly.')
  } else {
    parts.push(
      `You can run Python ${facts.pythonVersion} with the ${CODE_TOOL_NAME} tool (standard library, numpy, ` +
        'pandas, scipy, sympy, matplotlib; no network; ' +
        `${facts.timeoutSeconds} s per call). ` +
        (mode === 'on'
          ? 'Run code before you answer.'
          : 'Use it when a calculation or data processing is needed; do not use it for questions that need none.') +
        ' If the code fails, read the error, fix the code and run it again. ' +
        'When you answer, state the results in plain words; the user also sees the code and its output.',
    )
    if (files.length) {
      parts.push(
        'Files in the working directory of the code (read-only inputs unless the code wrote them):\n' +
          files.map((f) => `- ${f.name} (${f.bytes} bytes, ${f.mime_type})`).join('\n'),
      )
    }
  }
  return parts.join('\n\n')
}
