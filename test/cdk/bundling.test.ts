import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { buildStack, resourceByPrefix } from './support'

// The one test that runs esbuild, so a broken handler bundle fails here and not at deploy.
describe('Node function bundles', () => {
  // One bundled build (API and worker) for the tests that need no schedules.
  let bundled: ReturnType<typeof buildStack> | undefined
  const defaultStack = () => (bundled ??= buildStack({ bundle: true }))

  it('is built locally by esbuild as ESM with a require shim', () => {
    const { app, template } = defaultStack()
    const fn = resourceByPrefix(template, 'AWS::Lambda::Function', 'ApiFunction')
    const hash = String(fn.resource.Properties.Code.S3Key).replace(/\.zip$/, '')
    const bundle = path.join(app.outdir, `asset.${hash}`, 'index.mjs')
    expect(existsSync(bundle)).toBe(true)
    const code = readFileSync(bundle, 'utf8')
    expect(code.startsWith("import { createRequire } from 'node:module';")).toBe(true)
    expect(code).toMatch(/export\s*\{[^}]*\bhandler\b/)
    expect(fn.resource.Properties.Handler).toBe('index.handler')
  })

  it('bundles the background worker the same way, from functions/handlers/worker.ts', () => {
    const { app, template } = defaultStack()
    const fn = resourceByPrefix(template, 'AWS::Lambda::Function', 'WorkerFunction')
    const api = resourceByPrefix(template, 'AWS::Lambda::Function', 'ApiFunction')
    expect(fn.resource.Properties.Code.S3Key).not.toEqual(api.resource.Properties.Code.S3Key)
    const hash = String(fn.resource.Properties.Code.S3Key).replace(/\.zip$/, '')
    const code = readFileSync(path.join(app.outdir, `asset.${hash}`, 'index.mjs'), 'utf8')
    expect(code.startsWith("import { createRequire } from 'node:module';")).toBe(true)
    expect(code).toMatch(/export\s*\{[^}]*\bhandler\b/)
    expect(fn.resource.Properties.Handler).toBe('index.handler')
  })

  it('bundles the API authorizer the same way, from functions/handlers/authorizer.ts', () => {
    const { app, template } = defaultStack()
    const fn = resourceByPrefix(template, 'AWS::Lambda::Function', 'RestApiUsagePlansAuthorizerFunction')
    const hash = String(fn.resource.Properties.Code.S3Key).replace(/\.zip$/, '')
    const code = readFileSync(path.join(app.outdir, `asset.${hash}`, 'index.mjs'), 'utf8')
    expect(code.startsWith("import { createRequire } from 'node:module';")).toBe(true)
    expect(code).toMatch(/export\s*\{[^}]*\bhandler\b/)
    expect(code).toContain('PLAN_USAGE_KEYS')
    expect(fn.resource.Properties.Handler).toBe('index.handler')
  })

  // One bundled build with a schedule (so all four Node functions) and source maps on.
  let withSchedules: ReturnType<typeof buildStack> | undefined
  const scheduleStack = () =>
    (withSchedules ??= buildStack({
      bundle: true,
      interpreter: {
        schedules: [
          { name: 'n', schedule: 'rate(1 day)', organizationId: 'org_a', assistantId: 'asst_a', inputs: [{ role: 'user', content: 'hi' }] },
        ],
        api: { sourceMaps: true },
      },
    }))
  const bundleDir = (built: ReturnType<typeof buildStack>, prefix: string) => {
    const fn = resourceByPrefix(built.template, 'AWS::Lambda::Function', prefix)
    return path.join(built.app.outdir, `asset.${String(fn.resource.Properties.Code.S3Key).replace(/\.zip$/, '')}`)
  }

  it('ships no source map by default (api.sourceMaps off): nothing for Node to parse at cold start', () => {
    for (const prefix of ['ApiFunction', 'WorkerFunction', 'RestApiUsagePlansAuthorizerFunction']) {
      const dir = bundleDir(defaultStack(), prefix)
      expect(readdirSync(dir), prefix).toEqual(['index.mjs'])
      expect(readFileSync(path.join(dir, 'index.mjs'), 'utf8'), prefix).not.toContain('sourceMappingURL')
    }
  })

  it('ships an external map with every bundle when api.sourceMaps is on', () => {
    for (const prefix of ['ApiFunction', 'WorkerFunction', 'RestApiUsagePlansAuthorizerFunction', 'SchedulesRunnerFunction']) {
      const dir = bundleDir(scheduleStack(), prefix)
      expect(readdirSync(dir).sort(), prefix).toEqual(['index.mjs', 'index.mjs.map'])
      expect(readFileSync(path.join(dir, 'index.mjs'), 'utf8').trimEnd(), prefix).toMatch(/\/\/# sourceMappingURL=index\.mjs\.map$/)
      // sourcesContent off: the map names the sources without carrying them.
      expect(JSON.parse(readFileSync(path.join(dir, 'index.mjs.map'), 'utf8')).sourcesContent, prefix).toBeUndefined()
    }
  })

  it('bundles the schedule function the same way', () => {
    const { app, template } = scheduleStack()
    const fn = resourceByPrefix(template, 'AWS::Lambda::Function', 'SchedulesRunnerFunction')
    const hash = String(fn.resource.Properties.Code.S3Key).replace(/\.zip$/, '')
    const code = readFileSync(path.join(app.outdir, `asset.${hash}`, 'index.mjs'), 'utf8')
    expect(code.startsWith("import { createRequire } from 'node:module';")).toBe(true)
    expect(code).toMatch(/export\s*\{[^}]*\bhandler\b/)
    expect(code).toContain('Invalid scheduled event')
  })
})
