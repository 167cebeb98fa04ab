import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { buildStack, resourceByPrefix } from './support'

// The one test that runs esbuild, so a broken handler bundle fails here and not at deploy.
describe('API bundle', () => {
  it('is built locally by esbuild as ESM with a require shim', () => {
    const { app, template } = buildStack({ bundle: true })
    const fn = resourceByPrefix(template, 'AWS::Lambda::Function', 'ApiFunction')
    const hash = String(fn.resource.Properties.Code.S3Key).replace(/\.zip$/, '')
    const bundle = path.join(app.outdir, `asset.${hash}`, 'index.mjs')
    expect(existsSync(bundle)).toBe(true)
    const code = readFileSync(bundle, 'utf8')
    expect(code.startsWith("import { createRequire } from 'node:module';")).toBe(true)
    expect(code).toMatch(/export\s*\{[^}]*\bhandler\b/)
    expect(fn.resource.Properties.Handler).toBe('index.handler')
  })
})
