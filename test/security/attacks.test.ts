import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, execute, startTestService, TEST_KEY } from '../support/local'

// Attacks through the public HTTP API against the local server, in three postures:
// - root: each block runs as its own slot uid, in an empty network namespace, under seccomp;
// - deployed: each worker (runner and blocks) runs as one non-root uid of its own, with no
//   namespaces but every layer (seccomp, no_new_privs); cleanup is the subreaper's sweep;
// - lambda: as inside AWS Lambda (python-runtime/emulation/lambda_env.py): one uid, Lambda's
//   refusals (no seccomp, no_new_privs, subreaper or parent-death signal), read-only mounts but
//   /tmp, a loopback-only network where 127.0.0.1:9001 is the worker's own Runtime API, and
//   every block an invocation through that API; cleanup is the uid-wide sweep.
// Each attack checks what the caller gets back and, from outside, that nothing escaped: no
// marker file, no surviving process, no connection to a loopback listener, and another
// organization's next request unaffected.
const UID_BASE = 62900
const WORKER_UID_BASE = 64100
const LAMBDA_UID_BASE = 64200
const SECRET = 'server-secret-7c1e55aa'
/** Standbys each worker keeps (SANDBOX_STANDBYS, python-runtime/sandbox/config.py's default). */
const STANDBYS = 2
const MARKER = `/var/tmp/sci-attack-marker-${process.pid}`

let ctx: Awaited<ReturnType<typeof startTestService>>
let victimKey: string
let listener: Server
let runtimeApi: Server | undefined
let hits = 0

const status = (pid: number): Record<string, string> | undefined => {
  try {
    return Object.fromEntries(
      readFileSync(`/proc/${pid}/status`, 'utf8')
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]),
    )
  } catch {
    return undefined
  }
}
const children = (pid: number): number[] => {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number)
  } catch {
    return []
  }
}

const cmdline = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
  } catch {
    return ''
  }
}

/** Live processes of the blocks' uids other than the workers' runners, zygotes and standbys. */
function survivors(): number[] {
  const runners = new Set(ctx.service.pool.workerPids())
  const zygotes = new Set([...runners].flatMap(children).filter((pid) => cmdline(pid).includes('zygote.py')))
  const blockUid = (uid: number) =>
    posture === 'root'
      ? uid >= UID_BASE && uid < UID_BASE + 16
      : uid >= (posture === 'lambda' ? LAMBDA_UID_BASE : WORKER_UID_BASE) && uid < (posture === 'lambda' ? LAMBDA_UID_BASE : WORKER_UID_BASE) + 2
  const found: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const pid = Number(entry)
    const st = status(pid)
    if (!st || st.State?.startsWith('Z')) continue
    if (runners.has(pid) || zygotes.has(pid) || zygotes.has(Number(st.PPid))) continue
    if (blockUid(Number(st.Uid?.split(/\s+/)[0]))) found.push(pid)
  }
  // A zygote's children are the standbys the runner asked for, no more: one more is a process a
  // block attached to the zygote (clone(CLONE_PARENT)).
  for (const zygote of zygotes) {
    const kids = children(zygote).filter((pid) => !status(pid)?.State?.startsWith('Z'))
    if (kids.length > STANDBYS) found.push(...kids)
  }
  return found
}

async function settle() {
  for (let i = 0; i < 250; i++) {
    const s = ctx.service.pool.stats()
    if (s.busy === 0 && s.cleaning === 0 && s.queued === 0 && s.starting === 0 && survivors().length === 0) return
    await new Promise((r) => setTimeout(r, 20))
  }
}

let posture: 'root' | 'deployed' | 'lambda' = 'root'

type Expect = 'failed' | 'timed_out' | 'completed' | 'not-completed' | 'any' | 'sandbox_unavailable'

interface Attack {
  name: string
  code: (ports: { listener: number; api: number; lambda: number }) => string
  /** What the caller must get back. */
  expect: Expect
  /** A check of the outputs (e.g. the message names what was refused). */
  check?: (body: any) => void
  /** Where the deployed posture differs (one uid for runner and block), and why. */
  deployed?: { expect: Expect; check?: (body: any) => void }
  /** Where the lambda posture differs from the deployed one (Lambda's refusals), and the wall that holds. */
  lambda?: { expect: Expect; check?: (body: any) => void }
}

const noSecret = (body: any) => expect(JSON.stringify(body)).not.toContain(SECRET)
const errorName = (...names: string[]) => (body: any) => expect(names).toContain(body.outputs.find((o: any) => o.type === 'error')?.name)
const sys = (x86: number, arm: number) => `(${x86} if __import__('os').uname().machine == 'x86_64' else ${arm})`
const rawSyscall = (nr: string, ...args: string[]) =>
  `import ctypes\nf = ctypes.pythonapi.syscall\nf.restype = ctypes.c_long\nprint('rc', f(ctypes.c_long(${nr})${args.map((a) => `, ${a}`).join('')}))`

const printed = (...texts: string[]) => (body: any) => expect(texts).toContain(body.outputs[0]?.text)
/**
 * Raw HTTP to 127.0.0.1:9001 through system calls, past the audit hook: as a block could inside
 * Lambda, where no seccomp filter refuses socket(). Prints the status line it got, `refused`
 * (socket() refused: seccomp) or `unreachable`.
 */
const runtimeApiRequest = (method: string, path: string, body = '') =>
  [
    'import ctypes, os, select, struct',
    'f = ctypes.pythonapi.syscall',
    'f.restype = ctypes.c_long',
    "x86 = os.uname().machine == 'x86_64'",
    'fd = f(ctypes.c_long(41 if x86 else 198), ctypes.c_long(2), ctypes.c_long(1), ctypes.c_long(0))',
    "addr = struct.pack('<H', 2) + struct.pack('>H', 9001) + bytes([127, 0, 0, 1]) + bytes(8)",
    'if fd < 0:',
    "    print('refused')",
    'elif f(ctypes.c_long(42 if x86 else 203), ctypes.c_long(fd), ctypes.c_char_p(addr), ctypes.c_long(16)) != 0:',
    "    print('unreachable')",
    'else:',
    `    body = ${JSON.stringify(body)}.encode()`,
    `    os.write(fd, b'${method} ${path} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\nContent-Length: ' + str(len(body)).encode() + b'\\r\\n\\r\\n' + body)`,
    "    got = b''",
    '    while select.select([fd], [], [], 1.0)[0]:',
    '        chunk = os.read(fd, 65536)',
    '        if not chunk:',
    '            break',
    '        got += chunk',
    "    print(got.split(b'\\r\\n')[0].decode() if got else 'no answer')",
  ].join('\n')
const FORGED = '{"version":1,"status":"completed","outputs":[{"type":"text","source":"stdout","text":"FORGED"}],"duration_ms":0}'

const ATTACKS: Attack[] = [
  // network, in every form
  { name: 'tcp to a loopback listener', code: (p) => `import socket\nsocket.create_connection(('127.0.0.1', ${p.listener}), 2)`, expect: 'failed' },
  { name: 'tcp to the API itself', code: (p) => `import socket\nsocket.create_connection(('127.0.0.1', ${p.api}), 2)`, expect: 'failed' },
  { name: 'the local Lambda endpoint', code: (p) => `import urllib.request\nurllib.request.urlopen('http://127.0.0.1:${p.lambda}/2015-03-31/functions/sandbox/invocations', b'{}', 2)`, expect: 'failed' },
  // Lambda's Runtime API answers any process on 127.0.0.1:9001; a stand-in listens there.
  { name: 'the Runtime API: replaying GET /next', code: () => `import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9001/2018-06-01/runtime/invocation/next', timeout=2)`, expect: 'failed' },
  { name: 'the Runtime API: posting a forged response', code: () => `import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9001/2018-06-01/runtime/invocation/current/response', b'{"status":"completed"}', 2)`, expect: 'failed' },
  { name: 'the Runtime API: a daemon waiting for the next invocation', code: () => `import os, time, socket\nif os.fork() == 0:\n    os.setsid()\n    for _ in range(30):\n        try:\n            socket.create_connection(('127.0.0.1', 9001), 1)\n            open('${MARKER}', 'w').write('connected')\n        except Exception:\n            time.sleep(0.1)\n    os._exit(0)\nprint('waiting')`, expect: 'completed' },
  { name: 'an outside address', code: () => `import socket\nsocket.create_connection(('1.1.1.1', 443), 2)`, expect: 'failed' },
  { name: 'the instance metadata service', code: () => `import urllib.request\nurllib.request.urlopen('http://169.254.169.254/latest/meta-data/', timeout=2)`, expect: 'failed' },
  { name: 'DNS', code: () => `import socket\nsocket.getaddrinfo('example.com', 443)`, expect: 'failed' },
  { name: 'a raw socket', code: () => `import socket\nsocket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)`, expect: 'failed' },
  { name: 'a unix socket path', code: () => `import socket\nsocket.socket(socket.AF_UNIX).connect('/var/run/docker.sock')`, expect: 'failed' },
  { name: '_socket under the audit hook', code: (p) => `import _socket\ns = _socket.socket(2, 1)\ns.connect(('127.0.0.1', ${p.listener}))`, expect: 'failed' },
  // Lambda: no nested filter, so the socket opens; the network namespace (the VPC inside Lambda)
  // keeps it from reaching anything but the Runtime API and S3 (the attacks above and below).
  { name: 'socket() through ctypes', code: () => rawSyscall(sys(41, 198), 'ctypes.c_long(2)', 'ctypes.c_long(1)', 'ctypes.c_long(0)'), expect: 'completed', check: (b) => expect(b.outputs[0].text).toBe('rc -1'), lambda: { expect: 'completed', check: (b) => expect(b.outputs[0].text).toMatch(/^rc \d+$/) } },
  // The Runtime API through raw system calls. Seccomp refuses the socket in root and deployed;
  // in the lambda posture the block reaches its own environment's Runtime API, which refuses a
  // second GET /next while an invocation is in flight (403), an invented request id (400) and a
  // late init error (403): the block's own answer (its printed status line) still comes back.
  { name: 'the Runtime API by raw syscalls: GET /next', code: () => runtimeApiRequest('GET', '/2018-06-01/runtime/invocation/next'), expect: 'completed', check: printed('refused'), lambda: { expect: 'completed', check: printed('HTTP/1.1 403 Forbidden') } },
  { name: 'the Runtime API by raw syscalls: a forged response for an invented id', code: () => runtimeApiRequest('POST', '/2018-06-01/runtime/invocation/8476a536-e9f4-11e8-9739-2dfe598c3fcd/response', FORGED), expect: 'completed', check: printed('refused'), lambda: { expect: 'completed', check: printed('HTTP/1.1 400 Bad Request') } },
  { name: 'the Runtime API by raw syscalls: an init error', code: () => runtimeApiRequest('POST', '/2018-06-01/runtime/init/error', '{"errorMessage":"x","errorType":"Runtime.X"}'), expect: 'completed', check: printed('refused'), lambda: { expect: 'completed', check: printed('HTTP/1.1 403 Forbidden') } },
  // A daemon that polls for the next invocation and forges its answer: the uid-wide sweep kills
  // it before the runner answers (Lambda's handler cleans up before it returns).
  { name: 'the Runtime API by raw syscalls: a daemon that would forge the next answer', code: () => `import os, time\nif os.fork() == 0:\n    os.setsid()\n    for _ in range(40):\n        exec(${JSON.stringify(runtimeApiRequest('GET', '/2018-06-01/runtime/invocation/next'))})\n        time.sleep(0.05)\n    os._exit(0)\nprint('waiting')`, expect: 'completed' },
  // credentials and secrets
  { name: 'the environment', code: () => `import os\nprint(dict(os.environ))`, expect: 'completed', check: noSecret },
  { name: 'every /proc/*/environ and cmdline', code: () => "import os\nfor p in os.listdir('/proc'):\n    for f in ('environ', 'cmdline'):\n        try: print(open(f'/proc/{p}/{f}','rb').read())\n        except Exception: pass", expect: 'completed', check: noSecret },
  { name: "the parent's environ", code: () => "import os\nprint(open(f'/proc/{os.getppid()}/environ','rb').read())", expect: 'failed', check: noSecret },
  { name: "the runner's memory", code: () => "import os\nppid = int(open(f'/proc/{os.getppid()}/status').read().split('PPid:')[1].split()[0])\nprint(open(f'/proc/{ppid}/mem','rb').read(16))", expect: 'failed' },
  // The source is no secret (it is public, and readable inside Lambda); whether the block can read
  // it depends on where the checkout lives (a private home directory refuses the slot uid).
  { name: "the runner's source, for weaknesses", code: () => "import sandbox.runner, inspect\nprint(len(inspect.getsource(sandbox.runner)))", expect: 'any', check: noSecret },
  { name: 'ptrace of the parent', code: () => rawSyscall(sys(101, 117), 'ctypes.c_long(16)', 'ctypes.c_long(__import__("os").getppid())', 'None', 'None'), expect: 'completed', check: (b) => expect(b.outputs[0].text).toBe('rc -1') },
  { name: 'inherited descriptors', code: () => "import os\nprint(sorted(os.readlink(f'/proc/self/fd/{f}') for f in os.listdir('/proc/self/fd') if os.path.exists(f'/proc/self/fd/{f}')))", expect: 'completed', check: (b) => expect(b.outputs[0].text).not.toContain('socket:') },
  // filesystem
  // Lambda: everything but /tmp is a read-only filesystem (OSError EROFS).
  { name: 'a write outside the scratch directory', code: () => `open('${MARKER}', 'w').write('escaped')`, expect: 'completed', lambda: { expect: 'failed', check: errorName('OSError') } },
  { name: 'a write into the code', code: () => "import sandbox, os\nopen(os.path.join(os.path.dirname(sandbox.__file__), 'evil.py'), 'w')", expect: 'failed', check: errorName('PermissionError'), lambda: { expect: 'failed', check: errorName('OSError') } },
  { name: 'a .pth for the next interpreter', code: () => "open('/tmp/zzz-evil.pth', 'w').write('import os')", expect: 'completed' },
  { name: 'a symlink to /etc/shadow', code: () => "import os\nos.symlink('/etc/shadow', 'shadow.txt')", expect: 'completed', check: (b) => expect(b.outputs.some((o: any) => o.type === 'file')).toBe(false) },
  { name: 'reading /etc/shadow', code: () => "print(open('/etc/shadow').read())", expect: 'failed', check: errorName('PermissionError') },
  // Deployed: one uid for all, so the scratch root lists (only waiting standbys' empty directories).
  { name: '.. out of the scratch root', code: () => "import os\nprint(os.listdir('../..'))\nprint(os.listdir('..'))", expect: 'failed', deployed: { expect: 'completed' } },
  { name: 'a huge file', code: () => "f = open('big', 'wb')\nwhile True: f.write(b'x' * (1 << 20))", expect: 'failed', check: (b) => expect(JSON.stringify(b)).toContain('File too large') },
  { name: 'many files', code: () => "for i in range(3000): open(f'f{i}', 'w').write('x')", expect: 'completed' },
  // processes
  { name: 'a fork bomb', code: () => "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass", expect: 'not-completed' },
  { name: 'a setsid daemon that writes later', code: () => `import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(1)\n        open('${MARKER}', 'w').write('daemon')\n        os._exit(0)\n    os._exit(0)\nprint('left')`, expect: 'completed' },
  { name: 'a fork-and-exit hopper', code: () => "import os\nif os.fork() == 0:\n    os.setsid()\n    while True:\n        if os.fork(): os._exit(0)\nprint('hop')", expect: 'completed' },
  // The child exits after its block: a thread left running dies with it.
  { name: 'a thread that keeps running', code: () => `import threading, time\ndef later():\n    time.sleep(1)\n    open('${MARKER}', 'w').write('thread')\nthreading.Thread(target=later).start()`, expect: 'completed' },
  { name: 'ignoring SIGTERM past the limit', code: () => "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(0.01)", expect: 'timed_out' },
  // A process attached to the zygote, which forked the block: it must die with the block.
  { name: 'a sibling cloned onto the zygote', code: () => `import ctypes, os, time\nf = ctypes.pythonapi.syscall\nf.restype = ctypes.c_long\npid = f(ctypes.c_long(${sys(56, 220)}), ctypes.c_long(0x8000 | 17), ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0))\nif pid == 0:\n    time.sleep(30)\n    os._exit(0)\nprint('cloned', pid > 0)`, expect: 'completed', check: printed('cloned True') },
  { name: 'os._exit', code: () => "import os\nos._exit(9)", expect: 'failed', check: (b) => expect(JSON.stringify(b)).toContain('status 9') },
  // Deployed: the zygote shares the block's uid; killing it costs the next block a zygote start.
  { name: 'killing the parent', code: () => "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", expect: 'failed', check: errorName('PermissionError'), deployed: { expect: 'completed' } },
  // Deployed: kill(-1) reaches the runner; the invocation fails and the worker is replaced.
  { name: 'kill(-1)', code: () => "import os, signal\nos.kill(-1, signal.SIGKILL)\nprint('alive')", expect: 'completed', deployed: { expect: 'sandbox_unavailable' } },
  // native code and programs
  { name: 'ctypes loading a library', code: () => "import ctypes\nctypes.CDLL('libc.so.6')", expect: 'failed', check: errorName('PermissionError') },
  { name: 'os.system', code: () => "import os\nos.system('id')", expect: 'failed', check: errorName('PermissionError') },
  { name: 'subprocess', code: () => "import subprocess\nsubprocess.run(['sh', '-c', 'env'])", expect: 'failed', check: errorName('PermissionError') },
  { name: 'pty', code: () => "import pty\npty.spawn('/bin/sh')", expect: 'failed', check: errorName('PermissionError') },
  // Lambda: no nested filter; a user namespace is the kernel's to grant (it gives no power outside it).
  { name: 'unshare and mount', code: () => rawSyscall(sys(272, 97), 'ctypes.c_long(0x10000000)'), expect: 'completed', check: (b) => expect(b.outputs[0].text).toBe('rc -1'), lambda: { expect: 'completed', check: printed('rc -1', 'rc 0') } },
  { name: 'bpf', code: () => rawSyscall(sys(321, 280), 'ctypes.c_long(0)', 'None', 'ctypes.c_long(0)'), expect: 'completed', check: (b) => expect(b.outputs[0].text).toBe('rc -1') },
  // resources
  { name: 'a memory bomb', code: () => 'x = bytearray(64 * 1024**3)', expect: 'failed', check: errorName('MemoryError') },
  { name: 'a CPU spin', code: () => 'while True: pass', expect: 'timed_out' },
  { name: 'huge output', code: () => "while True: print('x' * 10000)", expect: 'timed_out', check: (b) => expect(b.output_dropped_bytes).toBeGreaterThan(0) },
  { name: 'deep recursion', code: () => 'def f(n): return f(n + 1)\nf(0)', expect: 'failed', check: errorName('RecursionError') },
  { name: 'a giant integer', code: () => 'x = 10 ** (10 ** 10)', expect: 'timed_out' },
  { name: 'a catastrophic regex', code: () => "import re\nre.match(r'(a+)+$', 'a' * 64 + 'b')", expect: 'timed_out' },
  { name: 'sys.exit with a status', code: () => 'import sys\nsys.exit(3)', expect: 'failed', check: errorName('SystemExit') },
  // cffi is not in the sandbox's stack here; where it is, its dlopen meets the same seccomp filter.
  { name: 'cffi', code: () => "try:\n    import cffi\n    ffi = cffi.FFI()\n    ffi.cdef('int socket(int, int, int);')\n    print('rc', ffi.dlopen(None).socket(2, 1, 0))\nexcept ImportError:\n    print('rc -1')", expect: 'any', check: (b) => expect(JSON.stringify(b)).not.toMatch(/rc [0-9]/) },
  { name: 'multiprocessing', code: () => "from multiprocessing import get_context\nwith get_context('fork').Pool(4) as p:\n    print(sum(p.map(abs, range(-50, 0))))", expect: 'any' },
  { name: "matplotlib's config dir", code: () => "import matplotlib, os\nd = matplotlib.get_configdir()\nopen(os.path.join(d, 'matplotlibrc'), 'w').write('backend: TkAgg')", expect: 'any' },
  { name: 'a module on sys.path under /tmp', code: () => "import sys\nopen('/tmp/zzz_evilmod.py', 'w').write('PLANTED = 1')\nopen('/tmp/sitecustomize.py', 'w').write('PLANTED = 1')\nsys.path.insert(0, '/tmp')\nimport zzz_evilmod", expect: 'completed' },
  { name: 'exception formatting that runs code', code: () => "class E(Exception):\n    def __str__(self):\n        import os\n        os.system('id')\n        return 'x'\nraise E()", expect: 'failed' },
  { name: "gc.get_objects() for the runner's secrets", code: () => "import gc\nprint([o for o in gc.get_objects() if isinstance(o, str) and ('SECRET' in o or 'AWS_' in o)][:20])", expect: 'completed', check: noSecret },
  { name: 'files and state left for the next organization', code: () => "open('/tmp/zzz-left.txt', 'w').write('org_test data')\nopen('left.csv', 'w').write('a,b')\nplanted = 'org_test state'", expect: 'completed' },
  // Python-level escapes
  { name: 'reaching Popen through a subclass walk', code: () => "import subprocess\nfor c in ().__class__.__base__.__subclasses__():\n    if c.__name__ == 'Popen':\n        c(['id'])\nraise SystemExit('Popen not found')", expect: 'failed', check: errorName('PermissionError') },
  { name: '_posixsubprocess.fork_exec', code: (p) => `import _posixsubprocess, os\nr, w = os.pipe()\npid = _posixsubprocess.fork_exec([b'/bin/sh', b'-c', b'id -u; cat /proc/1/environ; exec 3<>/dev/tcp/127.0.0.1/${p.listener}'], [b'/bin/sh'], True, (w,), None, None, -1, -1, -1, -1, w, w, -1, -1, False, False, -1, None, None, None, -1, None, False)\nos.close(w)\nos.waitpid(pid, 0)\nprint(os.read(r, 10000).decode())`, expect: 'any', check: noSecret },
]

describe.each([
  ['root', {}],
  ['deployed', { SANDBOX_WORKER_UID_BASE: String(WORKER_UID_BASE) }],
  ['lambda', { SANDBOX_POSTURE: 'lambda', SANDBOX_WORKER_UID_BASE: String(LAMBDA_UID_BASE) }],
] as const)('attacks through the HTTP API (%s posture)', (name, env) => {
  beforeAll(async () => {
    posture = name
    process.env.PROVIDER_SECRET_FOR_ATTACK_TEST = SECRET
    ctx = await startTestService({ SANDBOX_SLOT_UID_BASE: String(UID_BASE), CODE_TIMEOUT_MS: '3000', ...env })
    victimKey = await ctx.service.issueKey('org_victim')
    listener = createServer((socket) => {
      hits += 1
      socket.destroy()
    })
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', () => r()))
    runtimeApi = createServer((socket) => {
      hits += 1
      socket.destroy()
    })
    // The Runtime API stand-in; if the port is taken here, the attacks still must fail.
    await new Promise<void>((r) => runtimeApi!.once('error', () => r()).listen(9001, '127.0.0.1', () => r()))
  })
  afterAll(async () => {
    delete process.env.PROVIDER_SECRET_FOR_ATTACK_TEST
    listener?.close()
    runtimeApi?.close()
    rmSync(MARKER, { force: true })
    await ctx?.stop()
  })

  it('runs in the posture it claims', async () => {
    expect(ctx.service.layers.posture).toBe(name)
    // Inside Lambda the nested filter is refused (docs/lambda-environment.md), and reported so.
    expect(ctx.service.layers.seccomp).toBe(name !== 'lambda')
    if (name === 'lambda') {
      expect(Object.keys(ctx.service.refused ?? {}).sort()).toEqual(['no_new_privs', 'pdeathsig', 'seccomp', 'subreaper'])
    }
  })

  it('has at least 40 distinct attacks', () => {
    expect(new Set(ATTACKS.map((a) => a.name)).size).toBe(ATTACKS.length)
    expect(ATTACKS.length).toBeGreaterThanOrEqual(40)
  })

  it.each(ATTACKS.map((a) => [a.name, a] as const))('%s', async (_name, attack) => {
    const ports = {
      listener: (listener.address() as AddressInfo).port,
      api: Number(new URL(ctx.service.url).port),
      lambda: Number(new URL(ctx.service.lambdaUrl).port),
    }
    const expected =
      (posture === 'lambda' && (attack.lambda ?? attack.deployed)) || (posture === 'deployed' && attack.deployed) || attack
    rmSync(MARKER, { force: true })
    const hitsBefore = hits
    const res = await execute(ctx.service, attack.code(ports))
    noSecret(res.body)
    if (expected.expect === 'sandbox_unavailable') {
      expect(res.status).toBe(503)
      expect(res.body.error.code).toBe('sandbox_unavailable')
    } else {
      // The caller gets a clean result, never a server error.
      expect(res.status).toBe(200)
      const got = res.body.status
      if (expected.expect === 'not-completed') expect(['failed', 'timed_out']).toContain(got)
      else if (expected.expect !== 'any') expect(got).toBe(expected.expect)
      expected.check?.(res.body)
    }
    // Nothing escaped, checked from outside.
    await settle()
    expect(survivors().map((pid) => `${pid} ppid=${status(pid)?.PPid} uid=${status(pid)?.Uid?.split(/\s+/)[0]} ${cmdline(pid).replace(/\0/g, ' ')}`)).toEqual([])
    await new Promise((r) => setTimeout(r, /daemon|thread|waiting/.test(attack.name) ? 1300 : 10))
    expect(existsSync(MARKER)).toBe(false)
    expect(existsSync('/tmp/zzz-evil.pth')).toBe(false)
    expect(existsSync('/tmp/zzz_evilmod.py') || existsSync('/tmp/sitecustomize.py') || existsSync('/tmp/zzz-left.txt')).toBe(false)
    expect(hits).toBe(hitsBefore)
    // The server is healthy, and another organization's next block meets nothing of this one:
    // no files, no state, no module planted on a path.
    const victim = await api(
      ctx.service,
      'POST',
      '/v1/executions',
      {
        organization_id: 'org_victim',
        code: "import os, glob, sys\nprint(6 * 7, os.listdir('.'), glob.glob('/tmp/zzz*'), 'planted' in globals(), '/tmp' in sys.path)",
      },
      { authorization: `Bearer ${victimKey}` },
    )
    expect(victim.body.outputs).toEqual([{ type: 'text', source: 'stdout', text: '42 [] [] False False' }])
    // The attacker's own organization gets its next answer from the runner, not a forgery.
    if (/Runtime API/.test(attack.name)) {
      const own = await execute(ctx.service, 'print(6 * 7)')
      expect(own.body.outputs).toEqual([{ type: 'text', source: 'stdout', text: '42' }])
    }
  })

  it('an input file: tampering never changes the stored original, and links out are not followed', async () => {
    const fd = new FormData()
    fd.append('purpose', 'assistants')
    fd.append('file', new Blob(['a,b\n1,2\n'], { type: 'text/csv' }), 'input.csv')
    const up = await fetch(`${ctx.service.url}/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${TEST_KEY}` }, body: fd })
    const file = (await up.json()) as { id: string }
    const res = await execute(
      ctx.service,
      "import os\ntry:\n    os.chmod('input.csv', 0o666)\n    open('input.csv', 'w').write('tampered')\nexcept OSError as e:\n    print('refused', type(e).__name__)\ntry:\n    os.remove('input.csv')\n    os.symlink('/etc/shadow', 'input.csv')\n    os.symlink('/etc/passwd', 'passwd.txt')\nexcept OSError as e:\n    print('refused', type(e).__name__)",
      { file_ids: [file.id] },
    )
    expect(res.status).toBe(200)
    noSecret(res.body)
    // As root the input is root's, in a sticky directory: every change is refused. In the deployed
    // posture the block owns its copy and may change it; the stored original stays as uploaded.
    if (posture === 'root') expect(res.body.outputs[0].text).toBe('refused PermissionError\nrefused PermissionError')
    const outputs = res.body.outputs.filter((o: any) => o.type === 'file')
    for (const o of outputs) {
      const bytes = await (await fetch(`${ctx.service.url}/v1/files/${o.file_id}/content`, { headers: { authorization: `Bearer ${TEST_KEY}` } })).text()
      expect(bytes).not.toMatch(/root:/)
    }
    expect(outputs.map((o: any) => o.filename)).not.toContain('passwd.txt')
    const stored = await fetch(`${ctx.service.url}/v1/files/${file.id}/content`, { headers: { authorization: `Bearer ${TEST_KEY}` } })
    expect(await stored.text()).toBe('a,b\n1,2\n')
    await settle()
    expect(survivors()).toEqual([])
  })
})

describe('API abuse: another organization\'s ids in every route', () => {
  beforeAll(async () => {
    posture = 'root'
    ctx = await startTestService({ SANDBOX_SLOT_UID_BASE: String(UID_BASE), SANDBOX_WORKERS: '1' })
  })
  afterAll(async () => ctx?.stop())

  it('answers 404 (never the object) for every id of another organization', async () => {
    const owner = await api(ctx.service, 'POST', '/v1/assistants', { name: 'private', tools: [] })
    const asst = owner.body.id
    const file = (await api(ctx.service, 'POST', '/v1/files/uploads', { filename: 'private.csv', purpose: 'assistants', bytes: 1 })).body.file.id
    const session = (await api(ctx.service, 'POST', '/v1/sessions')).body.id
    const thief = { authorization: `Bearer ${await ctx.service.issueKey('org_thief')}` }
    const routes: [string, string, unknown?][] = [
      ['GET', `/v1/assistants/${asst}`],
      ['POST', `/v1/assistants/${asst}`, { name: 'mine now' }],
      ['DELETE', `/v1/assistants/${asst}`],
      ['GET', '/v1/responses/resp_doesnotexist'],
      ['POST', '/v1/responses/resp_doesnotexist/cancel'],
      ['GET', `/v1/files/${file}`],
      ['GET', `/v1/files/${file}/content`],
      ['DELETE', `/v1/files/${file}`],
      ['POST', `/v1/files/uploads/${file}/complete`],
      ['GET', `/v1/sessions/${session}`],
      ['DELETE', `/v1/sessions/${session}`],
      ['POST', '/v1/executions', { organization_id: 'org_thief', code: 'print(1)', file_ids: [file] }],
      ['POST', '/v1/executions', { organization_id: 'org_thief', code: 'print(1)', session_id: session }],
    ]
    for (const [method, path, body] of routes) {
      const res = await api(ctx.service, method, path, body, thief)
      expect([method, path, res.status]).toEqual([method, path, 404])
      expect(JSON.stringify(res.body)).not.toContain('private')
    }
    // Naming the other organization in a body is refused outright.
    const named = await api(ctx.service, 'POST', '/v1/assistants', { organization_id: 'org_test', name: 'x' }, thief)
    expect(named.status).toBe(403)
    // The owner still has it, unchanged.
    expect((await api(ctx.service, 'GET', `/v1/assistants/${asst}`)).body.name).toBe('private')
    expect((await api(ctx.service, 'GET', `/v1/files/${file}`)).body.filename).toBe('private.csv')
    expect((await api(ctx.service, 'GET', `/v1/sessions/${session}`)).status).toBe(200)
  })

  it('refuses path tricks in ids, form bodies and missing keys with clear codes', async () => {
    expect((await api(ctx.service, 'GET', '/v1/assistants/..%2F..%2Fetc')).status).toBe(400)
    const form = await api(ctx.service, 'POST', '/v1/executions', 'organization_id=org_test&code=1', {
      authorization: 'Bearer test_key_0123456789abcdefABCDEF',
      'content-type': 'application/x-www-form-urlencoded',
    })
    expect(form.status).toBe(400)
    expect(form.body.error.code).toBe('invalid_json')
    expect((await api(ctx.service, 'GET', '/v1/assistants', undefined, {})).body.error.code).toBe('unauthorized')
  })

  it('answers a normal request correctly and quickly after the suite', async () => {
    const started = performance.now()
    const res = await execute(ctx.service, "print(f'{10000 * 1.07 ** 20:,.2f}')")
    expect(res.body.outputs).toEqual([{ type: 'text', source: 'stdout', text: '38,696.84' }])
    expect(performance.now() - started).toBeLessThan(2_000)
  })
})
