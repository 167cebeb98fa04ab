import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export const SANDBOX_MODULES = ['numpy', 'pandas', 'scipy', 'sympy', 'matplotlib', 'cloudpickle']
// IPython makes a block a Jupyter cell (python-runtime/sandbox/cell.py); without it blocks run as
// plain Python cells, so it is installed with the rest but not required.
const DEBIAN_PACKAGES = [...SANDBOX_MODULES.map((m) => `python3-${m}`), 'python3-ipython', 'python3-matplotlib-inline']
const CHECK = `import sys; assert sys.version_info >= (3, 10), sys.version; import ${SANDBOX_MODULES.join(', ')}`

export class PythonSetupError extends Error {}

/** Does this interpreter have everything the sandbox imports? */
export function pythonIsReady(python: string): boolean {
  const out = spawnSync(python, ['-c', CHECK], { stdio: 'ignore', timeout: 60_000 })
  return out.status === 0
}

function pypiReachable(python: string): boolean {
  const probe = "import urllib.request; urllib.request.urlopen('https://pypi.org/simple/pip/', timeout=5)"
  return spawnSync(python, ['-c', probe], { stdio: 'ignore', timeout: 15_000 }).status === 0
}

function run(cmd: string, args: string[], log: (l: string) => void): boolean {
  log(`$ ${cmd} ${args.join(' ')}`)
  const out = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], timeout: 30 * 60_000 })
  return out.status === 0
}

const INSTRUCTIONS = [
  'The sandbox needs Python 3.10+ with numpy, pandas, scipy, sympy, matplotlib and cloudpickle.',
  'Install them one of these ways, then run `npm start` again:',
  `  - Debian/Ubuntu (as root): apt-get install -y ${DEBIAN_PACKAGES.join(' ')}`,
  '  - with pip: python3 -m venv .data/venv && .data/venv/bin/pip install -r python-runtime/requirements.txt',
  '  - or point PYTHON at an interpreter that has them: PYTHON=/path/to/python3 npm start',
].join('\n')

/**
 * Finds (or installs, once) an interpreter for the sandbox: PYTHON if set; a complete venv
 * under DATA_DIR; Debian's python3; else a venv with pip where PyPI answers; else Debian's
 * packages when running as root; else an error that says exactly what to install. A failed
 * install leaves nothing half-made behind.
 */
export function ensurePython(options: { python?: string; dataDir: string; root: string; log: (l: string) => void }): string {
  const { dataDir, log } = options
  if (options.python) {
    if (pythonIsReady(options.python)) return options.python
    throw new PythonSetupError(`PYTHON=${options.python} cannot import the sandbox's packages.\n${INSTRUCTIONS}`)
  }
  const venv = join(dataDir, 'venv')
  const venvPython = join(venv, 'bin', 'python')
  if (existsSync(join(venv, '.complete')) && pythonIsReady(venvPython)) return venvPython
  const system = '/usr/bin/python3'
  if (existsSync(system) && pythonIsReady(system)) return system

  const base = existsSync(system) ? system : 'python3'
  if (spawnSync(base, ['--version'], { stdio: 'ignore' }).status === 0 && pypiReachable(base)) {
    log('Installing the sandbox packages into a venv under DATA_DIR (first run only)...')
    const staging = join(dataDir, `venv.partial-${process.pid}`)
    mkdirSync(dataDir, { recursive: true })
    try {
      const ok =
        run(base, ['-m', 'venv', staging], log) &&
        run(join(staging, 'bin', 'pip'), ['install', '--disable-pip-version-check', '-r', join(options.root, 'python-runtime', 'requirements.txt')], log)
      if (ok && pythonIsReady(join(staging, 'bin', 'python'))) {
        writeFileSync(join(staging, '.complete'), new Date().toISOString())
        rmSync(venv, { recursive: true, force: true })
        renameSync(staging, venv)
        return venvPython
      }
    } finally {
      rmSync(staging, { recursive: true, force: true })
    }
    log('The pip install did not complete; trying the next way.')
  }
  if (process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
    log("Installing the sandbox packages with Debian's apt (first run only)...")
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
    const apt = (args: string[]) => spawnSync('apt-get', args, { stdio: ['ignore', 'inherit', 'inherit'], env }).status === 0
    if ((apt(['install', '-y', '-q', ...DEBIAN_PACKAGES]) || (apt(['update', '-q']) && apt(['install', '-y', '-q', ...DEBIAN_PACKAGES]))) && pythonIsReady(system)) {
      return system
    }
  }
  throw new PythonSetupError(INSTRUCTIONS)
}
