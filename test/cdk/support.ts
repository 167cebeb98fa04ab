import { readFileSync } from 'node:fs'
import { App } from 'aws-cdk-lib'
import { Template } from 'aws-cdk-lib/assertions'
import { CONFIG_CONTEXT_KEY, type InterpreterConfig, parseInterpreterConfig } from '../../lib/config'
import { projectPath } from '../../lib/paths'
import { InterpreterStack } from '../../lib/stack'

/** cdk.json's context, so the tests check the template that deploys (feature flags included). */
export function cdkJsonContext(): Record<string, unknown> {
  return JSON.parse(readFileSync(projectPath('cdk.json'), 'utf8')).context
}

export interface BuildOptions {
  /** Changes to the `interpreter` context, merged one level deep. */
  readonly interpreter?: Record<string, unknown>
  /** Run esbuild (slow); off by default. */
  readonly bundle?: boolean
}

export function buildStack(options: BuildOptions = {}) {
  const context = cdkJsonContext()
  const base = context[CONFIG_CONTEXT_KEY] as Record<string, unknown>
  const interpreter = { ...base }
  for (const [key, value] of Object.entries(options.interpreter ?? {})) {
    const current = base[key]
    interpreter[key] =
      value && typeof value === 'object' && !Array.isArray(value) && current && typeof current === 'object'
        ? { ...current, ...value }
        : value
  }
  const app = new App({
    context: {
      ...context,
      [CONFIG_CONTEXT_KEY]: interpreter,
      ...(options.bundle ? {} : { 'aws:cdk:bundling-stacks': [] }),
    },
  })
  const config: InterpreterConfig = parseInterpreterConfig(interpreter)
  const stack = new InterpreterStack(app, 'CodeInterpreter', {
    config,
    sandboxImageDirectory: projectPath('test/cdk/fixtures/sandbox-image'),
  })
  return { app, stack, config, template: Template.fromStack(stack) }
}

/** The one resource of a type whose logical id starts with `prefix`. */
export function resourceByPrefix(template: Template, type: string, prefix: string) {
  const matches = Object.entries(template.findResources(type)).filter(([id]) => id.startsWith(prefix))
  if (matches.length !== 1) {
    throw new Error(`expected one ${type} starting with ${prefix}, found ${matches.map(([id]) => id).join(', ') || 'none'}`)
  }
  const [logicalId, resource] = matches[0]!
  return { logicalId, resource: resource as { Properties: Record<string, any> } }
}
