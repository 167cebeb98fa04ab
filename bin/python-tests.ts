/** `npm run test:python`: the sandbox's pytest suite with the interpreter the sandbox uses. */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { ensurePython } from '../functions/local/python-setup'
import { PROJECT_ROOT } from '../functions/local/service'

const python = ensurePython({ python: process.env.PYTHON, dataDir: join(PROJECT_ROOT, '.data'), root: PROJECT_ROOT, log: console.log })
const hasPytest = () => spawnSync(python, ['-c', 'import pytest'], { stdio: 'ignore' }).status === 0
if (!hasPytest() && python === '/usr/bin/python3' && process.getuid?.() === 0) {
  spawnSync('apt-get', ['install', '-y', '-q', 'python3-pytest'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
}
if (!hasPytest()) {
  console.error(`pytest is missing for ${python}: apt-get install -y python3-pytest (or pip install pytest)`)
  process.exit(1)
}
const out = spawnSync(python, ['-B', '-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'tests', ...process.argv.slice(2)], {
  cwd: join(PROJECT_ROOT, 'python-runtime'),
  stdio: 'inherit',
  env: { ...process.env, SANDBOX_TEST_PYTHON: python },
})
process.exit(out.status ?? 1)
