/** Writes the sandbox contract's JSON Schema for the Python runtime (`npm run contract`). */
import { writeFileSync } from 'node:fs'
import { contractJsonSchema } from '../functions/contract/sandbox'

const target = new URL('../python-runtime/sandbox/contract.schema.json', import.meta.url)
writeFileSync(target, JSON.stringify(contractJsonSchema(), null, 2) + '\n')
console.log(`wrote ${target.pathname}`)
