/**
 * The Python blocks the smoke checks run. Each probe prints one line `SMOKE <json>` that the
 * checks parse; values of environment variables never leave the block, only names.
 */

export const MARKER = 'SMOKE '

/** The layers each posture requires by default (python-runtime/sandbox/config.py DEFAULT_REQUIRED; a test keeps them equal). */
export const DEFAULT_REQUIRED: Record<string, readonly string[]> = {
  root: ['nondumpable', 'subreaper', 'clean_env', 'close_fds', 'rlimits', 'no_new_privs', 'seccomp', 'uid', 'netns', 'uid_kill', 'pdeathsig'],
  deployed: ['nondumpable', 'subreaper', 'clean_env', 'close_fds', 'rlimits', 'no_new_privs', 'seccomp', 'pdeathsig'],
  lambda: ['clean_env', 'close_fds', 'rlimits', 'uid_sweep'],
}

/** What Lambda is reported to refuse (docs/lambda-environment.md): expected in the lambda posture. */
export const LAMBDA_EXPECTED_REFUSALS = ['subreaper', 'pdeathsig', 'no_new_privs', 'seccomp']

export const PUBLIC_ADDRESS = { host: '1.1.1.1', port: 443 }
export const DNS_NAME = 'example.com'
export const RUNTIME_API = { host: '127.0.0.1', port: 9001 }

/** How long a block waits for one connection attempt (a VPC without a route drops the SYN: no answer). */
const CONNECT_WAIT_S = 3

/**
 * TCP to a public address, DNS and the Runtime API, each through Python's socket module (which
 * the audit hook may refuse with a friendly error) and, for TCP, again by raw system calls
 * through ctypes.pythonapi, past the hook: what a hostile block would do. Non-blocking connect,
 * so a dropped SYN costs CONNECT_WAIT_S, not the kernel's two minutes.
 */
export const NETWORK_PROBE = String.raw`import ctypes, json, os, select, socket, struct
X86 = os.uname().machine == 'x86_64'
NR = dict(socket=41 if X86 else 198, connect=42 if X86 else 203, getpeername=52 if X86 else 205,
          getsockopt=55 if X86 else 209, close=3 if X86 else 57)
sc = ctypes.pythonapi.syscall
sc.restype = ctypes.c_long
L = ctypes.c_long
WAIT = ${CONNECT_WAIT_S}

def raw_tcp(ip, port):
    try:
        quad = bytes(int(x) for x in ip.split('.'))
        assert len(quad) == 4
    except Exception:
        return {'reached': False, 'how': 'not an IPv4 address: not tried'}
    fd = sc(L(NR['socket']), L(2), L(1 | 0o4000), L(0))
    if fd < 0:
        return {'reached': False, 'how': 'socket() refused'}
    try:
        addr = struct.pack('<H', 2) + struct.pack('>H', port) + quad + bytes(8)
        if sc(L(NR['connect']), L(fd), ctypes.c_char_p(addr), L(16)) != 0:
            if not select.select([], [fd], [], WAIT)[1]:
                return {'reached': False, 'how': f'no answer within {WAIT} s'}
        peer = ctypes.create_string_buffer(128)
        size = ctypes.c_uint32(128)
        if sc(L(NR['getpeername']), L(fd), peer, ctypes.byref(size)) == 0:
            return {'reached': True, 'how': 'connected'}
        err = ctypes.c_int(0)
        esize = ctypes.c_uint32(4)
        sc(L(NR['getsockopt']), L(fd), L(1), L(4), ctypes.byref(err), ctypes.byref(esize))
        return {'reached': False, 'how': os.strerror(err.value) if err.value else 'connect() failed at once'}
    finally:
        sc(L(NR['close']), L(fd))

def py_tcp(host, port):
    try:
        socket.create_connection((host, port), WAIT).close()
        return {'reached': True, 'how': 'connected'}
    except BaseException as e:
        return {'reached': False, 'how': f'{type(e).__name__}: {e}'}

def dns(name):
    try:
        found = sorted({a[4][0] for a in socket.getaddrinfo(name, 443)})
        return {'reached': True, 'how': 'resolved to ' + ', '.join(found[:4])}
    except BaseException as e:
        return {'reached': False, 'how': f'{type(e).__name__}: {e}'}

targets = [('${RUNTIME_API.host}', ${RUNTIME_API.port})]
env_api = os.environ.get('AWS_LAMBDA_RUNTIME_API')
if env_api and ':' in env_api:
    host, _, port = env_api.rpartition(':')
    if (host, int(port)) not in targets:
        targets.append((host, int(port)))
out = {
    'public_tcp': {'target': '${PUBLIC_ADDRESS.host}:${PUBLIC_ADDRESS.port}', 'socket': py_tcp('${PUBLIC_ADDRESS.host}', ${PUBLIC_ADDRESS.port}), 'raw': raw_tcp('${PUBLIC_ADDRESS.host}', ${PUBLIC_ADDRESS.port})},
    'dns': {'target': '${DNS_NAME}', 'socket': dns('${DNS_NAME}')},
    'runtime_api': [{'target': f'{h}:{p}', 'socket': py_tcp(h, p), 'raw': raw_tcp(h, p)} for h, p in targets],
}
print('${MARKER.trim()} ' + json.dumps(out))
`

/**
 * Names of credential-like variables: in os.environ, in the block's own initial environment
 * (/proc/self/environ: what the process was started with, which clearing os.environ does not
 * erase) and in every other process's environ the block can read. Names only, never values.
 */
export const CREDENTIALS_PROBE = String.raw`import json, os, re
EXACT = {'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_LAMBDA_RUNTIME_API',
         'AWS_CONTAINER_CREDENTIALS_FULL_URI', 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI', 'AWS_CONTAINER_AUTHORIZATION_TOKEN'}
PATTERN = re.compile(r'SECRET|TOKEN|KEY|PASSW|CREDENTIAL', re.I)
flagged = lambda names: sorted({n for n in names if n in EXACT or PATTERN.search(n)})
found = {}
if flagged(os.environ):
    found['os.environ'] = flagged(os.environ)
me = os.getpid()
readable = []
unreadable = 0
for entry in ['self'] + sorted(p for p in os.listdir('/proc') if p.isdigit()):
    if entry == str(me):
        continue
    try:
        raw = open(f'/proc/{entry}/environ', 'rb').read()
    except OSError:
        unreadable += 1
        continue
    names = [item.split(b'=', 1)[0].decode(errors='replace') for item in raw.split(b'\0') if item]
    if entry != 'self':
        readable.append(entry)
    if flagged(names):
        found[f'/proc/{entry}/environ'] = flagged(names)
ancestors = []
pid = os.getppid()
for _ in range(2):
    try:
        ancestors.append(pid)
        pid = int(open(f'/proc/{pid}/status').read().split('PPid:')[1].split()[0])
    except Exception:
        break
print('${MARKER.trim()} ' + json.dumps({'names': sorted(os.environ), 'found': found, 'readable': readable,
                               'unreadable': unreadable, 'ancestors': ancestors}))
`

export const FIRST_BLOCK = 'print(1+1)'

export const FAILING_BLOCK = 'def smoke_divide(n):\n    return n / 0\n\nsmoke_divide(1)'

export const TIMEOUT_BLOCK = "import time\nprint('sleeping', flush=True)\ntime.sleep(120)\nprint('woke up')"

export const CSV_NAME = 'smoke.csv'
export const CSV_TEXT = 'region,amount\nnorth,10\nsouth,32\n'
export const FILES_BLOCK = `import pandas as pd
import matplotlib.pyplot as plt
df = pd.read_csv('${CSV_NAME}')
print(int(df['amount'].sum()))
plt.bar(df['region'], df['amount'])
plt.title('smoke')
plt.show()`

export const SESSION_SET = 'smoke_state = {"answer": 6 * 7}'
export const SESSION_GET = "print(smoke_state['answer'])"

export const MODEL_QUESTION = 'What is the compound interest on $10,000 at 7% for 20 years? Compute it with Python.'
