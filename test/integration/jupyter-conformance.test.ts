import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, execute, startTestService } from '../support/local'

// Issue 13, through the HTTP API: a block behaves like a Jupyter cell. The cases of
// python-runtime/tests/jupyter_cases.json run in a real Jupyter kernel (the oracle,
// python-runtime/tests/jupyter_oracle.py, Debian's python3-ipykernel) and as executions of one
// session; outputs are compared item by item after the oracle's own normalization. A case marked
// `differs` is a deliberate difference: the API must answer the pinned items, the kernel others.
// The seven examples also run in every posture (root; deployed and lambda need root).

const RUNTIME = join(__dirname, '../../python-runtime')
const PYTHON = process.env.PYTHON ?? '/usr/bin/python3'
type Item = unknown[]
type Case = { name: string; cells: string[]; differs?: string; kernel_varies?: boolean; sandbox?: Item[][]; postures?: Record<string, Partial<Case>> }
const CASES: Case[] = JSON.parse(readFileSync(join(RUNTIME, 'tests/jupyter_cases.json'), 'utf8')).cases

function pngSize(url: string | undefined): number[] {
  if (!url?.startsWith('data:image/png;base64,')) return []
  const png = Buffer.from(url.slice('data:image/png;base64,'.length), 'base64')
  return [png.readUInt32BE(16), png.readUInt32BE(20)]
}

/** The API's output items as the oracle's normalized items (see jupyter_oracle.sandbox_items). */
function normalized(outputs: any[], rules: [RegExp, string][]): Item[] {
  const norm = (text: string) => rules.reduce((t, [re, to]) => t.replace(re, to), text)
  const out: any[][] = []
  for (const o of outputs) {
    if (o.type === 'text' && (o.source === 'stdout' || o.source === 'stderr')) {
      const last = out.at(-1)
      if (last && last[0] === o.source) last[1] += `${o.text}\n`
      else out.push([o.source, `${o.text}\n`])
    } else if (o.type === 'text' && o.source === 'result') {
      out.push(o.mime_bundle ? ['result', norm(o.text), o.mime_bundle] : ['result', norm(o.text)])
    } else if (o.type === 'image') {
      // Small images come inline (a data: URL): their size is compared too.
      out.push(['image', ...pngSize(o.url)])
    } else if (o.type === 'error') {
      out.push(['error', o.name, norm(o.message)])
    }
  }
  return out
    .map((i) => (i[0] === 'stdout' || i[0] === 'stderr' ? [i[0], norm(i[1].replace(/\n$/, ''))] : i))
    .filter((i) => !((i[0] === 'stdout' || i[0] === 'stderr') && i[1] === ''))
}

/** A pinned or expected item may leave out trailing fields (an image's size when it is not inline). */
const same = (expected: Item[], actual: Item[]) =>
  expected.length === actual.length &&
  expected.every((e, i) => JSON.stringify(e.slice(0, actual[i].length)) === JSON.stringify(actual[i].slice(0, e.length)))

async function runSession(service: any, cells: string[]) {
  const session = await api(service, 'POST', '/v1/sessions')
  expect(session.status).toBe(200)
  const answers = []
  for (const code of cells) {
    const res = await execute(service, code, { session_id: session.body.id })
    expect(res.status).toBe(200)
    answers.push(res.body)
  }
  return answers
}

const isRoot = process.getuid?.() === 0
const postures: [string, Record<string, string> & { SANDBOX_SLOT_UID_BASE: string }][] = [
  ['root', { SANDBOX_SLOT_UID_BASE: '68000' }],
  ['deployed', { SANDBOX_SLOT_UID_BASE: '68000', SANDBOX_POSTURE: 'deployed', SANDBOX_WORKER_UID_BASE: '68100' }],
  ['lambda', { SANDBOX_SLOT_UID_BASE: '68000', SANDBOX_POSTURE: 'lambda', SANDBOX_WORKER_UID_BASE: '68200' }],
]

describe.skipIf(!isRoot)('a block behaves like a Jupyter cell, through the HTTP API (needs root)', () => {
  for (const [posture, env] of postures) {
    describe(`${posture} posture`, () => {
      let ctx: Awaited<ReturnType<typeof startTestService>>
      beforeAll(async () => {
        ctx = await startTestService({ ...env, SANDBOX_WORKERS: '1', CODE_TIMEOUT_MS: '20000' })
      })
      afterAll(async () => ctx?.stop())

      it('draws fresh random numbers in each execution', async () => {
        const code = 'import numpy as np; print(np.random.randint(0, 10**9, 3))'
        const outs = []
        for (let i = 0; i < 3; i++) outs.push((await execute(ctx.service, code)).body.outputs[0].text)
        expect(new Set(outs).size).toBe(3)
      })

      it("finds and runs the block's unittest tests, and reports the failure", async () => {
        const code =
          "import unittest\nclass T(unittest.TestCase):\n    def test_ok(self):\n        self.assertEqual(1, 1)\n    def test_bad(self):\n        self.assertEqual(1, 2)\nunittest.main(argv=['x'], exit=False)\nNone"
        const res = await execute(ctx.service, code)
        const stderr = res.body.outputs.filter((o: any) => o.source === 'stderr').map((o: any) => o.text).join('')
        expect(stderr).toContain('Ran 2 tests')
        expect(stderr).toContain('FAILED (failures=1)')
      })

      it('runs asyncio.run()', async () => {
        const res = await execute(ctx.service, 'import asyncio\nasync def main():\n    await asyncio.sleep(0)\n    return 5\nasyncio.run(main())')
        expect(res.body.outputs).toEqual([{ type: 'text', source: 'result', text: '5' }])
      })

      it("shows an earlier block's figure as an image, and keeps the session's settings", async () => {
        const [, second] = await runSession(ctx.service, [
          'import matplotlib.pyplot as plt\nfig, ax = plt.subplots(); ax.plot([1, 3, 2])',
          "ax.set_title('Revenue')\nfig",
        ])
        expect(second.outputs.map((o: any) => o.type)).toEqual(['image'])
        const [first, next] = await runSession(ctx.service, [
          "import pandas as pd, numpy as np, matplotlib.pyplot as plt\npd.set_option('display.max_columns', None)\nplt.rcParams['figure.figsize'] = (3, 2)\nnp.random.seed(0)",
          "print(pd.get_option('display.max_columns'), tuple(plt.rcParams['figure.figsize']), np.random.randint(0, 1000, 3))",
        ])
        expect(first.outputs).toEqual([])
        expect(next.outputs).toEqual([{ type: 'text', source: 'stdout', text: 'None (3.0, 2.0) [684 559 629]' }])
      })

      it('returns fd-level writes in order, on their own stream', async () => {
        const res = await execute(ctx.service, "print('before'); import os; os.write(1, b'middle\\n'); print('after'); os.write(2, b'err\\n')")
        expect(res.body.outputs).toEqual([
          { type: 'text', source: 'stdout', text: 'before\nmiddle\nafter' },
          { type: 'text', source: 'stderr', text: 'err' },
          { type: 'text', source: 'result', text: '4' },
        ])
      })

      it('returns each figure once, never a blank image', async () => {
        const res = await execute(ctx.service, "import matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show(); plt.savefig('c.png')")
        expect(res.body.outputs.map((o: any) => o.type)).toEqual(['image', 'text', 'file'])
        expect(res.body.outputs[1]).toEqual({ type: 'text', source: 'result', text: '<Figure size 640x480 with 0 Axes>' })
      })

      it("keeps a result's MIME bundle on its output item", async () => {
        const res = await execute(ctx.service, "import pandas as pd\npd.DataFrame({'a': [1, 2]})")
        expect(res.body.outputs).toHaveLength(1)
        expect(res.body.outputs[0]).toMatchObject({ type: 'text', source: 'result' })
        expect(res.body.outputs[0].mime_bundle['text/html']).toContain('<table')
      })

      if (posture === 'root') {
        // The whole conformance suite against a real kernel, once (the kernel's answers do not
        // depend on the posture; tests/test_conformance.py runs it in all three).
        it('answers every conformance case as a real Jupyter kernel does', { timeout: 600_000 }, async () => {
          const { stdout } = await promisify(execFile)(PYTHON, ['-B', join(RUNTIME, 'tests/jupyter_oracle.py')], {
            timeout: 400_000,
            maxBuffer: 64 << 20,
          })
          const oracle = JSON.parse(stdout)
          if (oracle.skipped) {
            console.warn(`Jupyter conformance skipped: ${oracle.skipped}`)
            return
          }
          const rules: [RegExp, string][] = oracle.normalize.map(([p, r]: [string, string]) => [new RegExp(p, 'g'), r.replace(/\\(\d)/g, '$$$1')])
          const problems: string[] = []
          for (const spec of CASES) {
            const c = { ...spec, ...spec.postures?.[posture] }
            const got = (await runSession(ctx.service, c.cells)).map((r: any) => normalized(r.outputs, rules))
            const kernel: Item[][] = oracle.cases[c.name]
            if (c.differs) {
              const pinned = c.sandbox as Item[][]
              if (!(pinned.length === got.length && pinned.every((p, i) => same(p, got[i]))))
                problems.push(`${c.name}: ${JSON.stringify(got)} is not the pinned ${JSON.stringify(pinned)}`)
              // Where the kernel's own order depends on timing (its stream threads), it may match.
              if (!c.kernel_varies && JSON.stringify(got) === JSON.stringify(kernel)) problems.push(`${c.name}: no longer differs (${c.differs})`)
            } else if (!(kernel.length === got.length && kernel.every((k, i) => same(k, got[i])))) {
              problems.push(`${c.name}:\n  api:    ${JSON.stringify(got)}\n  kernel: ${JSON.stringify(kernel)}`)
            }
          }
          expect(problems).toEqual([])
        })
      }
    })
  }
})
