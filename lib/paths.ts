import path from 'node:path'
import { fileURLToPath } from 'node:url'

// ESM has no __dirname; resolve from this file so synth works from any working directory.
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

export const projectPath = (...parts: string[]): string => path.join(PROJECT_ROOT, ...parts)
