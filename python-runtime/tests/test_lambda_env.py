"""The Lambda emulation is what docs/lambda-environment.md says Lambda is, and the sandbox works in it."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import PYTHON, lambda_env_script, texts

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "emulation"))
import lambda_env  # noqa: E402

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the Lambda emulation is built as root")

PROBE = r'''
import ctypes, errno, json, os, platform
libc = ctypes.CDLL(None, use_errno=True)
nr = {"x86_64": {"prctl": 157, "seccomp": 317}, "aarch64": {"prctl": 167, "seccomp": 277}}[platform.machine()]
out = {"uid": os.getuid(), "euid": os.geteuid(), "shm": os.path.lexists("/dev/shm"), "calls": {}, "writes": {}}
def call(name, *args):
    ctypes.set_errno(0)
    rc = libc.syscall(nr[name], *[ctypes.c_ulong(a) for a in args])
    return "ok" if rc >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
for option in (1, 4, 15, 22, 36, 38):
    out["calls"][f"prctl:{option}"] = call("prctl", option, 0 if option == 4 else 1, 0, 0, 0)
out["calls"]["seccomp"] = call("seccomp", 1, 0, 0)
for path in ("/etc", "/usr", "/var", os.environ["LAMBDA_TASK_ROOT"], "/tmp"):
    try:
        name = os.path.join(path, f".probe-{os.getpid()}")
        open(name, "w").close(); os.unlink(name); out["writes"][path] = "ok"
    except OSError as exc:
        out["writes"][path] = errno.errorcode[exc.errno]
out["env"] = sorted(os.environ)
import multiprocessing
try:
    multiprocessing.Lock(); out["mp_lock"] = "ok"
except OSError as exc:
    out["mp_lock"] = type(exc).__name__
print(json.dumps(out))
'''


def _doc_rows() -> set[str]:
    with open(os.path.join(REPO, "docs", "lambda-environment.md")) as f:
        text = f.read()
    table = text.split("## Process controls refused")[1].split("\n\n")[1]
    return {m.group(1) for m in re.finditer(r"^\| `([^`]+)` \|", table, re.M)}


def test_the_refusal_table_and_the_documented_evidence_name_the_same_operations():
    in_code = {f"prctl({lambda_env.PRCTL_NAMES[opt]})" if call == "prctl" else f"{call}()"
               for call, opt, _source in lambda_env.REFUSED}
    assert in_code == _doc_rows()
    assert all(source for _c, _o, source in lambda_env.REFUSED)


def _run_probe(uid: int) -> dict:
    import json
    import tempfile
    folder = tempfile.mkdtemp(prefix="lambda-probe-")  # readable by the uid, unlike pytest's tmp_path
    os.chmod(folder, 0o755)
    script = os.path.join(folder, "probe.py")
    with open(script, "w") as f:
        f.write(PROBE)
    os.chmod(script, 0o644)
    env = {"PATH": "/usr/bin:/bin", "SANDBOX_LAMBDA_UID": str(uid), "SANDBOX_LAMBDA_EXEC": str(script)}
    try:
        out = subprocess.run([PYTHON, "-B", lambda_env_script()], env=env, capture_output=True, text=True, timeout=60)
    finally:
        import shutil
        shutil.rmtree(folder, ignore_errors=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@needs_root
def test_the_emulated_environment_refuses_what_lambda_refuses_and_nothing_else():
    got = _run_probe(63900)
    assert (got["uid"], got["euid"]) == (63900, 63900)
    refused_options = {opt for call, opt, _ in lambda_env.REFUSED if call == "prctl"}
    for option in (1, 4, 15, 22, 36, 38):
        expected = "EPERM" if option in refused_options else "ok"
        assert got["calls"][f"prctl:{option}"] == expected, option
    assert got["calls"]["seccomp"] == "EPERM"


@needs_root
def test_the_emulated_environment_is_read_only_but_tmp_has_no_dev_shm_and_lambda_variables():
    got = _run_probe(63901)
    assert got["writes"].pop("/tmp") == "ok"
    assert set(got["writes"].values()) == {"EROFS"}
    assert got["shm"] is False
    assert got["mp_lock"] == "FileNotFoundError"  # as in Lambda: no /dev/shm for semaphores
    for name in ("AWS_LAMBDA_FUNCTION_NAME", "LAMBDA_TASK_ROOT", "_HANDLER", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        assert name in got["env"]


@needs_root
def test_an_earlier_environments_processes_of_the_uid_do_not_survive_into_a_new_one():
    squatter = subprocess.Popen(["sleep", "60"], user=63902, group=63902, extra_groups=[])
    try:
        env = {"PATH": "/usr/bin:/bin", "SANDBOX_LAMBDA_UID": "63902", "SANDBOX_LAMBDA_EXEC": "/bin/true"}
        subprocess.run([PYTHON, "-B", lambda_env_script()], env=env, timeout=60, capture_output=True)
        assert squatter.wait(5) == -signal.SIGKILL
    finally:
        squatter.kill()


def test_the_emulation_refuses_to_start_without_root_or_a_uid():
    env = {"PATH": "/usr/bin:/bin", "SANDBOX_LAMBDA_EXEC": "/bin/true"}
    out = subprocess.run([PYTHON, "-B", lambda_env_script()], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 78
    assert "lambda emulation:" in out.stderr


# --- the sandbox inside it ------------------------------------------------------------------------

@needs_root
def test_the_sandbox_runs_in_the_lambda_posture_and_reports_each_refused_layer(fresh_worker):
    w = fresh_worker("lambda")
    assert w.layers["posture"] == "lambda"
    for layer in ("subreaper", "pdeathsig", "no_new_privs", "seccomp"):
        assert w.layers[layer] is False, layer
        assert "Operation not permitted" in w.refused[layer] or "Permission denied" in w.refused[layer], layer
    # Granted where Lambda is believed to grant them (the first deploy confirms nondumpable).
    for layer in ("nondumpable", "clean_env", "close_fds", "rlimits", "uid_sweep", "audit_hook"):
        assert w.layers[layer] is True, layer
    r = w.run("print(1 + 1)")
    assert r["status"] == "completed" and texts(r) == "2"


@needs_root
def test_a_layer_the_lambda_posture_cannot_get_stops_start_up_when_required(fresh_worker):
    with pytest.raises(RuntimeError, match="not granted here.*seccomp"):
        fresh_worker("lambda", SANDBOX_REQUIRE="clean_env,seccomp")


def _forwarders() -> set[int]:
    """Root processes still named lambda_env.py: the forwarders (the runner exec'd away)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    named = b"emulation/lambda_env.py" in f.read()
                if named and _uid(int(entry)) == 0:
                    found.add(int(entry))
            except (OSError, StopIteration):
                pass
    return found


@needs_root
def test_a_block_reaches_only_the_forwarded_ports_and_the_forwarder_ends_with_the_runner(fresh_worker):
    import socket
    open_srv, closed_srv = socket.socket(), socket.socket()
    for srv in (open_srv, closed_srv):
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
    before = _forwarders()
    try:
        w = fresh_worker("lambda", SANDBOX_LAMBDA_FORWARD_PORTS=str(open_srv.getsockname()[1]))
        probe = ("import socket\nfor port in ({}, {}):\n    try:\n"
                 "        socket.create_connection(('127.0.0.1', port), timeout=2); print('connected')\n"
                 "    except OSError as e:\n        print(type(e).__name__)")
        # The audit hook refuses socket() first; the namespace is the wall once it is bypassed.
        r = w.run("import sys, _socket\nsys.modules['socket'].socket.__new__ = object.__new__\n" +
                  probe.format(open_srv.getsockname()[1], closed_srv.getsockname()[1]))
        assert texts(r) in ("connected\nConnectionRefusedError", "PermissionError\nPermissionError")
        forwarders = sorted(_forwarders() - before)
        assert len(forwarders) == 1
        os.kill(w.runner_pid, signal.SIGKILL)
        w.proc.wait(5)
        deadline = time.monotonic() + 5
        while _alive(forwarders[0]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(forwarders[0])
    finally:
        open_srv.close()
        closed_srv.close()


def _uid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Uid:")).split()[1])


@needs_root
def test_without_a_parent_death_signal_the_zygote_and_standbys_end_with_the_runner(fresh_worker):
    w = fresh_worker("lambda")
    w.run("print(1)")
    w.settle()
    zygote = w.zygote_pid
    with open(f"/proc/{zygote}/task/{zygote}/children") as f:
        standbys = [int(p) for p in f.read().split()]
    assert standbys
    os.kill(w.runner_pid, signal.SIGKILL)
    w.proc.wait(5)
    deadline = time.monotonic() + 5
    alive = [zygote, *standbys]
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.02)
    assert alive == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            state = next(line for line in f if line.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return not state.split()[1].startswith(("Z", "X"))


@needs_root
def test_without_a_subreaper_a_fork_bombs_orphans_do_not_keep_the_next_block_from_forking(fresh_worker):
    # The orphans go to PID 1, which may leave them as zombies (this machine's does); the kernel
    # counts zombies against RLIMIT_NPROC, so the next block's limit is set on what exists then.
    w = fresh_worker("lambda", CODE_TIMEOUT_MS="2000")
    bomb = "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass"
    fork = "import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nos.waitpid(pid, 0)\nprint('forked')"
    for _ in range(2):
        assert w.run(bomb)["status"] in ("timed_out", "failed")
        r = w.run(fork)
        assert (r["status"], texts(r)) == ("completed", "forked"), r


def test_without_a_subreaper_a_shared_uid_that_is_not_exclusive_refuses_to_start(monkeypatch, tmp_path):
    # Orphans would leave the runner's tree and only a scan of the whole uid finds them, which
    # may kill only where the runner owns the uid: fail closed, and say why.
    from sandbox import kernel
    from sandbox.config import Config
    from sandbox.runner import Runner, SandboxError

    def refused() -> None:
        raise OSError(1, "prctl(36): Operation not permitted")

    monkeypatch.setattr(kernel, "set_child_subreaper", refused)
    config = Config.from_env({"SANDBOX_POSTURE": "deployed", "SANDBOX_SCRATCH_ROOT": str(tmp_path / "s")})
    try:
        with pytest.raises(SandboxError, match="subreaper was refused and the uid is shared"):
            Runner(config)
    finally:
        kernel.set_dumpable(True)  # the attempt made this test process non-dumpable


@needs_root
def test_the_forwarder_holds_at_most_its_connection_cap(fresh_worker):
    # A root process carries the bytes: a block must not make it (or the server behind it) hold
    # an unbounded number of connections.
    import socket
    import threading
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(512)
    accepted = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        port = srv.getsockname()[1]
        w = fresh_worker("lambda", SANDBOX_LAMBDA_FORWARD_PORTS=str(port))
        x86 = os.uname().machine == "x86_64"
        code = ("import ctypes, os, struct, time\nf = ctypes.pythonapi.syscall\nf.restype = ctypes.c_long\n"
                f"addr = struct.pack('<H', 2) + struct.pack('>H', {port}) + bytes([127, 0, 0, 1]) + bytes(8)\n"
                "ok = 0\nfor _ in range(150):\n"
                f"    fd = f(ctypes.c_long({41 if x86 else 198}), ctypes.c_long(2), ctypes.c_long(1), ctypes.c_long(0))\n"
                f"    ok += f(ctypes.c_long({42 if x86 else 203}), ctypes.c_long(fd), ctypes.c_char_p(addr), ctypes.c_long(16)) == 0\n"
                "time.sleep(1)\nprint(ok)")
        r = w.run(code)
        assert int(texts(r)) == 150  # the forwarder accepts every one inside...
        assert 0 < len(accepted) <= lambda_env.MAX_CONNECTIONS  # ...and carries at most its cap
    finally:
        stop.set()
        t.join()
        for c in accepted:
            c.close()
        srv.close()

