"""Isolation: each layer is attacked by a real snippet and checked from outside."""
import json
import os
import socket
import struct
import threading
import time

import pytest

from conftest import SECRET, Worker, _children, errors, survivors, texts

MARKER_DIR = "/var/tmp"


def marker_path(name: str) -> str:
    return os.path.join(MARKER_DIR, f"sbx-marker-{name}-{os.getpid()}")


@pytest.fixture
def listener():
    """A TCP server on loopback that records whether anything connected."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    hits = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                hits.append(conn.recv(100))
                conn.close()
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1], hits
    stop.set()
    t.join()
    srv.close()


def no_secret(result: dict) -> None:
    import json
    assert SECRET not in json.dumps(result)


# --- credentials -----------------------------------------------------------------------------

def test_environment_holds_no_secret(worker):
    r = worker.run("import os\nprint(dict(os.environ))\ntry:\n    print(open('/proc/self/environ','rb').read())\n"
                   "except PermissionError as e:\n    print(e)")
    assert r["status"] == "completed"
    no_secret(r)
    assert "AWS_" not in texts(r)


def test_parent_and_every_process_environ_and_cmdline_is_unreadable_or_clean(worker):
    code = ("import os\nfound = []\nfor p in os.listdir('/proc'):\n    if not p.isdigit(): continue\n"
            "    for f in ('environ', 'cmdline'):\n        try:\n"
            "            found.append(open(f'/proc/{p}/{f}', 'rb').read().decode(errors='replace'))\n"
            "        except OSError:\n            pass\nprint('\\n'.join(found))\n"
            "print(open(f'/proc/{os.getppid()}/environ','rb').read())")
    r = worker.run(code)
    no_secret(r)


def test_runner_memory_is_unreadable(worker):
    code = (f"pid = {worker.runner_pid}\n"
            "maps = open(f'/proc/{pid}/maps').read()\nprint(maps[:100])")
    r = worker.run(code)
    assert r["status"] == "failed"
    assert errors(r)[0]["name"] == "PermissionError"
    code = (f"pid = {worker.runner_pid}\nf = open(f'/proc/{{pid}}/mem', 'rb')\nprint(f.read(16))")
    r = worker.run(code)
    assert r["status"] == "failed" and errors(r)[0]["name"] == "PermissionError"
    no_secret(r)


def test_ptrace_of_the_runner_is_refused(worker):
    code = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n")
    # ctypes.CDLL is refused by the audit hook; go around it through the already-loaded pythonapi.
    code = ("import ctypes, os\nsyscall = ctypes.pythonapi.syscall if hasattr(ctypes.pythonapi, 'syscall') else None\n"
            "import _ctypes\n"
            "libc = ctypes.CDLL(None, use_errno=True) if False else ctypes.pythonapi\n"
            "f = libc.syscall\nf.restype = ctypes.c_long\n"
            f"rc = f(ctypes.c_long(101 if os.uname().machine == 'x86_64' else 117), ctypes.c_long(16), ctypes.c_long({worker.runner_pid}), None, None)\n"
            "print('rc', rc, ctypes.get_errno())")
    r = worker.run(code)
    assert "rc -1" in texts(r)
    no_secret(r)


def test_inherited_descriptors_are_closed(worker):
    code = ("import os\nfor fd in sorted(int(x) for x in os.listdir('/proc/self/fd')):\n"
            "    try: print(fd, os.readlink(f'/proc/self/fd/{fd}'))\n    except OSError: pass")
    r = worker.run(code)
    lines = texts(r).splitlines()
    targets = [line.split(" ", 1)[1] for line in lines]
    assert not any("socket:" in t for t in targets), targets
    # stdin (/dev/null), stdout/stderr (one pipe), the job pipe's read end (closed), the result pipe,
    # and the listdir's own fd.
    assert len(lines) <= 5, lines


# --- network ---------------------------------------------------------------------------------

@pytest.mark.parametrize("snippet", [
    "import socket\ns = socket.socket(); s.connect(('127.0.0.1', PORT)); s.send(b'leak')",
    "import socket\ns = socket.create_connection(('127.0.0.1', PORT), timeout=2); s.send(b'leak')",
    "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:PORT/leak', timeout=2)",
    "import socket\nsocket.getaddrinfo('example.com', 80)",
    "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)",
    "import socket\nsocket.socket(socket.AF_UNIX).connect('/run/some.sock')",
    "import socket\ns = socket.socket(socket.AF_INET6); s.connect(('::1', PORT))",
], ids=["tcp-loopback", "create-connection", "urllib", "dns", "raw-icmp", "unix-path", "tcp6"])
def test_network_in_every_form_is_refused(worker, listener, snippet):
    port, hits = listener
    r = worker.run(snippet.replace("PORT", str(port)), limits={"timeout_ms": 5000})
    assert r["status"] == "failed"
    time.sleep(0.05)
    assert hits == []


def test_socket_syscall_through_ctypes_is_refused_by_seccomp(worker, listener):
    port, hits = listener
    code = ("import ctypes, os\nf = ctypes.pythonapi.syscall\nf.restype = ctypes.c_long\n"
            "nr = 41 if os.uname().machine == 'x86_64' else 198\n"
            "print('fd', f(ctypes.c_long(nr), ctypes.c_long(2), ctypes.c_long(1), ctypes.c_long(0)))")
    r = worker.run(code)
    if worker.posture == "lambda":
        # Lambda refuses the nested seccomp filter, so the socket opens; the network namespace
        # (the VPC inside Lambda) is what keeps it from reaching anything.
        assert texts(r).startswith("fd ") and texts(r) != "fd -1"
        r = worker.run(f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                       "except OSError as e:\n    print(type(e).__name__)", )
        assert texts(r) in ("PermissionError", "ConnectionRefusedError")
        r = worker.run(code.replace("print('fd', ", "fd = (") + "\nimport struct\n"
                       "addr = struct.pack('<HH4s8x', 2, __import__('socket').htons(" + str(port) + "), bytes([127, 0, 0, 1]))\n"
                       "print(f(ctypes.c_long(42 if os.uname().machine == 'x86_64' else 203), ctypes.c_long(fd), "
                       "ctypes.c_char_p(addr), ctypes.c_long(16)))")
        assert texts(r) == "-1"
    else:
        assert texts(r) == "fd -1"
    assert hits == []


def test_lifting_the_audit_hook_still_leaves_seccomp(worker, listener):
    port, hits = listener
    # _socket.socket skips the high-level wrapper; the kernel still refuses.
    r = worker.run(f"import _socket\ns = _socket.socket(2, 1)\ns.connect(('127.0.0.1', {port}))")
    assert r["status"] == "failed"
    assert hits == []


# --- processes and programs ---------------------------------------------------------------------

def test_subprocess_and_os_system_are_refused(worker):
    for code in ("import subprocess\nsubprocess.run(['id'])", "import os\nos.system('id')",
                 "import os\nos.execv('/bin/sh', ['sh'])", "import pty\npty.spawn('/bin/sh')"):
        r = worker.run(code)
        assert r["status"] == "failed", code
        assert errors(r)[0]["name"] == "PermissionError", (code, r)


def test_fork_exec_bypass_runs_without_privilege_or_network(worker, listener):
    """_posixsubprocess skips the audit hook: the program runs, but with no secret, no network."""
    port, hits = listener
    code = ("import _posixsubprocess, os\nr, w = os.pipe()\n"
            "args = [b'/bin/sh', b'-c', b'id -u; env; cat /proc/$PPID/environ; "
            f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo leak >&3']\n"
            "pid = _posixsubprocess.fork_exec(args, [b'/bin/sh'], True, (w,), None, None, -1, -1, -1, -1, w, w, "
            "-1, -1, False, False, -1, None, None, None, -1, None, False)\n"
            "os.close(w)\nos.waitpid(pid, 0)\nprint(os.read(r, 100000).decode())")
    r = worker.run(code)
    no_secret(r)
    time.sleep(0.05)
    assert hits == []
    if worker.posture == "root":
        assert r["status"] == "failed" or texts(r).split()[0] in {str(worker.slot_uid + k) for k in range(8)}


def test_double_forked_setsid_daemon_does_not_survive(worker):
    marker = marker_path(f"daemon-{worker.posture}")
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            f"        time.sleep(1.0)\n        open({marker!r}, 'w').write('escaped')\n        os._exit(0)\n"
            "    os._exit(0)\nprint('parent done')")
    r = worker.run(code)
    assert r["status"] == "completed"
    assert survivors(worker) == []
    time.sleep(1.5)
    assert not os.path.exists(marker)


def test_fork_and_exit_hopper_does_not_survive(worker):
    code = ("import os\nif os.fork() == 0:\n    os.setsid()\n    while True:\n        if os.fork() != 0:\n"
            "            os._exit(0)\nprint('started')")
    r = worker.run(code)
    assert r["status"] == "completed"
    assert survivors(worker) == []
    time.sleep(0.3)
    assert survivors(worker) == []


def test_threads_that_keep_running_die_with_the_block(worker):
    marker = marker_path(f"thread-{worker.posture}")
    code = ("import threading, time\ndef later():\n    time.sleep(1.0)\n"
            f"    open({marker!r}, 'w').write('x')\nthreading.Thread(target=later).start()\nprint('bye')")
    r = worker.run(code, limits={"timeout_ms": 3000})
    # A non-daemon thread keeps the block from ending until it finishes or the limit hits.
    assert r["status"] in ("completed", "timed_out")
    time.sleep(1.3)
    assert survivors(worker) == []
    assert not os.path.exists(marker) or r["status"] == "completed"
    if os.path.exists(marker):
        os.unlink(marker)


def test_killing_the_parent_does_not_break_the_worker(worker):
    r = worker.run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('tried')")
    assert worker.alive()
    assert worker.run("print(2)")["outputs"][0]["text"] == "2"
    if worker.posture == "root":
        assert r["status"] == "failed" and errors(r)[0]["name"] == "PermissionError"


def test_a_killed_zygote_leaves_no_standby_behind(worker):
    # The block kills the zygote and waits until it has exited before ending, so that the
    # runner's cleanup meets a zygote that is fully gone (a race CI once lost): the standbys it
    # had forked are orphans then, and must be gone when the block's cleanup reports idle.
    code = ("import os, signal, time\nz = os.getppid()\nme = str(os.getpid())\n"
            "siblings = [p for p in open(f'/proc/{z}/task/{z}/children').read().split() if p != me]\n"
            "try:\n    os.kill(z, signal.SIGKILL)\nexcept PermissionError:\n    print('refused')\nelse:\n"
            "    for _ in range(500):\n        try:\n"
            "            state = open(f'/proc/{z}/stat').read().rsplit(')', 1)[1].split()[0]\n"
            "        except OSError:\n            break\n        if state == 'Z':\n            break\n"
            "        time.sleep(0.01)\n    print(' '.join(siblings))")
    r = worker.run(code)
    if worker.posture == "root":
        assert texts(r).strip() == "refused"
    else:
        siblings = [int(p) for p in texts(r).split()]
        assert siblings, r  # the pool keeps standbys waiting: there was one to orphan
        # Killed ones may take a few ms to finish dying; one left waiting never would.
        deadline = time.monotonic() + 1.0
        while [p for p in siblings if _live(p)] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [p for p in siblings if _live(p)] == []
    assert worker.run("print(2)")["outputs"][0]["text"] == "2"


def test_what_a_block_writes_into_the_zygotes_config_folder_reaches_no_later_block(worker):
    # Same uid (deployed, lambda): the block can write into matplotlib's and IPython's folder,
    # which the wipe of /tmp keeps for the zygote; the runner notices and starts a fresh one.
    r = worker.run("import matplotlib, os\nd = matplotlib.get_configdir()\n"
                   "try:\n    open(os.path.join(d, 'matplotlibrc'), 'a').write('lines.linewidth: 9\\n')\n"
                   "    print('written', d)\nexcept OSError as e:\n    print('refused', type(e).__name__)")
    if worker.posture == "root":
        assert texts(r).startswith("refused PermissionError"), r
    else:
        assert texts(r).startswith("written"), r
    r = worker.run("import matplotlib, os\nprint(os.path.exists(os.path.join(matplotlib.get_configdir(), 'matplotlibrc')))")
    assert texts(r).strip() == "False", r


def test_ordinary_blocks_keep_the_zygote(worker):
    # The config-folder check must not take ordinary work for tampering: a figure, %cd, %timeit.
    worker.settle()
    before = worker.zygote_pid
    for code in ("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()",
                 "%cd /tmp\n%bookmark here", "%timeit -n 1 -r 1 sum(range(10))", "print(1)"):
        r = worker.run(code)
        assert r["status"] == "completed", (code, r)
    worker.settle()
    assert worker.zygote_pid == before


def test_a_stopped_zygote_is_resumed(worker):
    # A same-uid block can SIGSTOP the zygote; left stopped, it would answer no fork request and
    # a later block would wait READY_TIMEOUT_S for a standby.
    r = worker.run("import os, signal\nz = os.getppid()\ntry:\n    os.kill(z, signal.SIGSTOP)\n"
                   "except PermissionError:\n    z = 0\nprint(z)")
    zygote = int(texts(r).strip())
    if worker.posture == "root":
        assert zygote == 0  # the audit hook refuses a signal to the parent
        return
    worker.settle()
    with open(f"/proc/{zygote}/stat") as f:
        assert f.read().rsplit(")", 1)[1].split()[0] != "T"


def test_a_sibling_cloned_onto_the_zygote_dies_with_the_block(worker):
    # clone(CLONE_PARENT) makes a child of the block's parent (the zygote), which no standby
    # check may mistake for one the runner asked for (issue 16's survivor, found in review).
    nr = 56 if os.uname().machine == "x86_64" else 220
    code = ("import ctypes, os, time\nf = ctypes.pythonapi.syscall\nf.restype = ctypes.c_long\n"
            f"pid = f(ctypes.c_long({nr}), ctypes.c_long(0x8000 | 17), ctypes.c_long(0), ctypes.c_long(0), "
            "ctypes.c_long(0), ctypes.c_long(0))\nif pid == 0:\n    time.sleep(20)\n    os._exit(0)\n"
            "print('cloned', pid)")
    r = worker.run(code)
    assert r["status"] == "completed", r
    sibling = int(texts(r).split()[1])
    assert sibling > 0, r  # no posture refuses CLONE_PARENT: else this would prove nothing
    deadline = time.monotonic() + 1.0
    while _live(sibling) and time.monotonic() < deadline:
        time.sleep(0.01)
    survived = _live(sibling)
    if survived:
        os.kill(sibling, 9)
    assert not survived
    assert worker.run("print(3)")["outputs"][0]["text"] == "3"


def _live(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(os.geteuid() != 0, reason="the root posture needs root")
def test_kill_all_is_contained_in_root_posture(fresh_worker):
    worker = fresh_worker("root")
    r = worker.run("import os, signal\nos.kill(-1, signal.SIGKILL)\nprint('still here')")
    # Only the slot's own uid is reachable, and kill(-1) spares the caller.
    assert worker.alive()
    assert r["status"] == "completed" and texts(r) == "still here"
    assert worker.run("print(3)")["outputs"][0]["text"] == "3"


# --- filesystem ----------------------------------------------------------------------------------

def test_writes_outside_scratch_are_refused_or_wiped(worker):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    targets = [os.path.join(here, "sandbox", "evil.py"), "/etc/evil", "/usr/lib/python3/dist-packages/evil.pth"]
    for target in targets:
        r = worker.run(f"open({target!r}, 'w').write('import os')")
        assert r["status"] == "failed", target
        # Inside Lambda everything but /tmp is a read-only filesystem (the lambda posture's mounts,
        # EROFS); a checkout under /tmp (as a CI clone may be) is root's, so the uid is refused.
        allowed = ("OSError", "PermissionError") if worker.posture == "lambda" else ("PermissionError",)
        assert errors(r)[0]["name"] in allowed
        assert not os.path.exists(target)
    r = worker.run("open('/tmp/evil.pth', 'w').write('import os; os.system(\"id\")')\n"
                   "import os\nos.makedirs('/tmp/__pycache__', exist_ok=True)\n"
                   "open('/tmp/sitecustomize.py', 'w').write('x=1')")
    worker.settle()
    for leftover in ("/tmp/evil.pth", "/tmp/__pycache__", "/tmp/sitecustomize.py"):
        assert not os.path.exists(leftover), leftover


def test_symlink_out_of_scratch_is_not_followed_when_collecting_files(worker):
    r = worker.run("import os\nos.symlink('/etc/shadow', 'shadow')\nos.symlink('/etc', 'etcdir')\n"
                   "open('real.txt', 'w').write('ok')")
    names = [o["filename"] for o in r["outputs"] if o["type"] == "file"]
    assert names == ["real.txt"]


def test_dotdot_paths_cannot_reach_the_runner_scratch_root_siblings(worker):
    r = worker.run("import os\nprint(os.listdir('..'), os.getpid())")
    if worker.posture == "root":
        # The scratch root is 0711 and not the slot's: it cannot be listed.
        assert r["status"] == "failed" and errors(r)[0]["name"] == "PermissionError"
    else:
        # One uid for all: listing works, but only this block's and the waiting standbys'
        # (still empty) directories exist; nothing of an earlier block is left.
        import ast
        listed, pid = texts(r).rsplit(" ", 1)
        names = set(ast.literal_eval(listed))
        worker.settle()
        standbys = {p for p in _children(worker.zygote_pid)}
        assert pid in names and names - {pid} <= standbys


def test_huge_file_count_is_wiped_after_the_block(worker):
    r = worker.run("for i in range(2000):\n    open(f'f{i}', 'w').write('x')", limits={"max_files": 5})
    assert r["status"] == "completed"
    assert "were not returned" in texts(r, "sandbox") or "not examined" in texts(r, "sandbox")
    assert worker.run("import os\nprint(len(os.listdir('.')))")["outputs"][0]["text"] == "0"


# --- native code -----------------------------------------------------------------------------

def test_loading_a_shared_object_is_refused(worker):
    r = worker.run("import ctypes\nctypes.CDLL('libc.so.6')")
    assert r["status"] == "failed" and errors(r)[0]["name"] == "PermissionError"


def test_namespaces_and_mounts_are_refused_by_seccomp(worker):
    code = ("import ctypes, os\nf = ctypes.pythonapi.syscall\nf.restype = ctypes.c_long\n"
            "x86 = os.uname().machine == 'x86_64'\n"
            "print(f(ctypes.c_long(272 if x86 else 97), ctypes.c_long(0x10000000)))\n"
            "print(f(ctypes.c_long(165 if x86 else 40), None, None, None, None, None))\n"
            "print(f(ctypes.c_long(321 if x86 else 280), ctypes.c_long(0), None, ctypes.c_long(0)))")
    r = worker.run(code)
    if worker.posture == "lambda":
        # No nested filter inside Lambda: a user namespace is the kernel's to refuse or grant. It
        # gives the block no power over anything outside it (the uid, the read-only mounts and the
        # network namespace stay); mount and bpf still need privileges the block does not have.
        unshare, mount, bpf = texts(r).split()
        assert unshare in ("0", "-1") and (mount, bpf) == ("-1", "-1")
    else:
        assert texts(r).split() == ["-1", "-1", "-1"]


def test_multiprocessing_pool_works_inside_the_limits(worker):
    r = worker.run("from multiprocessing import get_context\n"
                   "with get_context('fork').Pool(2) as p:\n    print(sum(p.map(abs, [-1, -2, 3])))",
                   limits={"timeout_ms": 20000})
    # Lambda has no /dev/shm; here the pool works. Either way the result is clean.
    assert r["status"] in ("completed", "failed")
    if r["status"] == "completed":
        assert texts(r) == "6"
    assert survivors(worker) == []


def test_layers_are_reported(worker):
    layers = worker.layers
    if worker.posture == "lambda":
        refused = {"subreaper", "pdeathsig", "no_new_privs", "seccomp"}
        assert {name for name, granted in layers.items() if granted is False} - {"uid_kill"} == refused
        assert set(worker.refused) == refused
        assert layers["uid_sweep"] and not layers["uid_kill"] and "netns" not in layers
        return
    for layer in ("nondumpable", "subreaper", "clean_env", "close_fds", "rlimits", "no_new_privs", "seccomp", "pdeathsig"):
        assert layers.get(layer), layer
    assert worker.refused == {}
    if worker.posture == "root":
        assert layers["uid"] == worker.slot_uid and layers["netns"] and layers["uid_kill"]
    else:
        assert "netns" not in layers and not layers["uid_kill"]


def test_deployed_kill_all_ends_the_worker_which_fails_closed(fresh_worker):
    """Inside Lambda the child shares the runner's uid: kill(-1) reaches the runner. The
    invocation fails and the environment is discarded; nothing survives for the next tenant."""
    w = fresh_worker("deployed")
    with pytest.raises(EOFError):
        w.run("import os, signal\nos.kill(-1, signal.SIGKILL)")
    time.sleep(0.3)
    from sandbox.runner import live_pids_of_uid
    assert [p for p in live_pids_of_uid(w.uid if os.geteuid() == 0 else os.geteuid())
            if p not in (os.getpid(),)] == []


def test_required_layer_missing_fails_closed(fresh_worker):
    with pytest.raises(RuntimeError, match="are not granted here .*: netns"):
        fresh_worker("deployed", SANDBOX_REQUIRE="seccomp,netns")


def test_unknown_required_layer_is_a_config_error(fresh_worker):
    with pytest.raises(RuntimeError, match="unknown layers"):
        fresh_worker("deployed", SANDBOX_REQUIRE="seccomp,magic")


def test_tenant_binding_refuses_a_second_organization(worker):
    reply = worker.raw({"version": 1, "request_id": "t", "code": "print(1)"}, tenant="org_other")
    assert reply["error"]["errorType"] == "TenantMismatch"


def test_bad_payload_is_refused_by_the_contract(worker):
    reply = worker.raw({"version": 1, "request_id": "t", "code": "print(1)", "extra": 1})
    assert reply["error"]["errorType"] == "InvalidPayload"
    assert "extra" in reply["error"]["errorMessage"]


def test_tree_sweep_without_an_exclusive_uid_still_kills_daemons_and_hoppers(fresh_worker):
    """Local pools share a uid between workers: the sweep then covers only the runner's subtree,
    which holds every orphan because the runner is a subreaper."""
    w = fresh_worker("deployed", SANDBOX_UID_EXCLUSIVE="0")
    marker = marker_path("tree-daemon")
    daemon = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
              f"        time.sleep(1.0)\n        open({marker!r}, 'w').write('escaped')\n        os._exit(0)\n"
              "    os._exit(0)\nprint('parent done')")
    hopper = ("import os\nif os.fork() == 0:\n    os.setsid()\n    while True:\n        if os.fork() != 0:\n"
              "            os._exit(0)\nprint('started')")
    assert w.run(daemon)["status"] == "completed"
    assert w.run(hopper)["status"] == "completed"
    assert survivors(w) == []
    time.sleep(1.3)
    assert survivors(w) == []
    assert not os.path.exists(marker)


def test_files_planted_for_the_next_block_are_gone(worker):
    plant = ("import os\nfor d in os.listdir('..'):\n    try:\n        open(os.path.join('..', d, 'planted.py'), 'w').write('x')\n"
             "    except OSError:\n        pass\n")
    worker.run(plant)
    for _ in range(3):
        r = worker.run("import os\nprint(os.listdir('.'))")
        assert texts(r) == "[]"


@pytest.mark.parametrize("frame", [
    "b'Z' + (5).to_bytes(4, 'big') + b'hello'",                 # unknown type
    "b'o' + (2**31).to_bytes(4, 'big')",                        # announces 2 GiB of stdout
    "b'd' + (7).to_bytes(4, 'big') + b'{\"x\":1}'",             # done frame without a status
    "b'i' + (4).to_bytes(4, 'big') + b'GIF8'",                  # image that is not a PNG
    "b'p' + (3).to_bytes(4, 'big') + b'abc'",                   # a state part nobody asked for
], ids=["unknown-type", "huge-length", "bad-done", "not-png", "part-without-state"])
def test_forged_frames_on_the_result_pipe_are_refused(worker, frame):
    """The block can write to its own result pipe; the runner parses it strictly and bounded."""
    code = ("import os\nfds = [int(f) for f in os.listdir('/proc/self/fd')]\n"
            "for fd in fds:\n    try:\n        if os.readlink(f'/proc/self/fd/{fd}').startswith('pipe:') and fd > 2:\n"
            f"            os.write(fd, {frame})\n    except OSError:\n        pass\n"
            "import time\ntime.sleep(5)")
    r = worker.run(code, limits={"timeout_ms": 3000})
    assert r["status"] == "failed"
    assert any("protocol violation" in e["message"] for e in errors(r))
    assert survivors(worker) == []
    assert worker.run("print('fine')")["outputs"][0]["text"] == "fine"


def test_zygote_is_single_threaded_and_holds_no_secret(worker):
    worker.settle()
    with open(f"/proc/{worker.zygote_pid}/status") as f:
        threads = [line for line in f if line.startswith("Threads:")][0].split()[1]
    assert threads == "1"
    with open(f"/proc/{worker.zygote_pid}/environ", "rb") as f:
        environ = f.read().decode()
    assert SECRET not in environ and "AWS_" not in environ


@pytest.mark.skipif(os.geteuid() != 0, reason="the root posture needs root")
def test_a_new_runner_kills_what_a_dead_runner_left_behind(fresh_worker):
    first = fresh_worker("root")
    marker = marker_path("orphan")
    daemon = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(2)\n"
              f"    open({marker!r}, 'w').write('survived')\n    os._exit(0)\nwhile True: time.sleep(1)")
    data = json.dumps({"payload": {"version": 1, "request_id": "t", "code": daemon}, "tenant_id": "org_test"}).encode()
    first.proc.stdin.write(struct.pack(">I", len(data)) + data)
    first.proc.stdin.flush()
    time.sleep(0.5)
    first.proc.kill()  # the runner dies mid-block; its zygote follows (parent-death signal)
    first.proc.wait()
    from sandbox.runner import live_pids_of_uid
    assert any(live_pids_of_uid(first.slot_uid + k) for k in range(8))
    # The next runner on the same slot uids kills them before it forks a standby.
    second = Worker("root", {"SANDBOX_SLOT_UID": str(first.slot_uid)})
    try:
        leftovers = [p for k in range(8) for p in live_pids_of_uid(first.slot_uid + k)
                     if p not in {int(c) for c in _children(second.zygote_pid)}]
        assert leftovers == []
        time.sleep(2)
        assert not os.path.exists(marker)
    finally:
        second.close()


def test_system_v_ipc_does_not_outlive_the_block(worker):
    # A segment outlives every process and holds memory no rlimit counts. Where seccomp is granted
    # the block cannot make one; inside Lambda it can, and the cleanup removes it.
    x86 = os.uname().machine == "x86_64"
    shmget = 29 if x86 else 194
    make = ("import ctypes\nf = ctypes.pythonapi.syscall\nf.restype = ctypes.c_long\n"
            f"print(f(ctypes.c_long({shmget}), ctypes.c_long(0x5ca1ab1e), ctypes.c_long(1 << 20), ctypes.c_long(0o1666)))")
    made = int(texts(worker.run(make)))
    assert (made >= 0) == (worker.posture == "lambda")
    worker.settle()
    find = make.replace("ctypes.c_long(1 << 20), ctypes.c_long(0o1666)", "ctypes.c_long(0), ctypes.c_long(0)")
    assert texts(worker.run(find)) == "-1"


def test_folders_of_killed_runners_are_removed_by_the_next_runner(tmp_path):
    # A runner killed without close() leaves its config and font-cache folders; the next runner
    # of the uid removes those whose runner pid is gone, and no other.
    from sandbox.standbys import remove_stale_runner_dirs
    gone = 2 ** 22 + 12345  # above pid_max's default: no such process
    stale = [tmp_path / f"sandbox-mpl-{gone}-abc", tmp_path / f"sandbox-mplcache-{gone}-def"]
    alive = tmp_path / f"sandbox-mpl-{os.getppid()}-ghi"
    other = tmp_path / "sandbox-mpl-notapid"
    for d in (*stale, alive, other):
        d.mkdir()
        (d / "fontlist-v330.json").write_text("{}")
    remove_stale_runner_dirs(str(tmp_path))
    assert [d.exists() for d in stale] == [False, False]
    assert alive.exists() and other.exists()
