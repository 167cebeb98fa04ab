"""Fixtures: real sandbox workers (local_worker.py) in three postures.

- root: as root here, with every layer (own uid per slot, network namespace, uid kill).
- deployed: the runner and the child share one non-root uid (nobody) with no namespaces;
  cleanup is the subreaper + stop-then-kill sweep.
- lambda: as inside AWS Lambda (emulation/lambda_env.py): one non-root uid, read-only mounts but
  /tmp, no /dev/shm, and a seccomp filter refusing what Lambda refuses (subreaper, parent-death
  signal, no_new_privs, nested filters); cleanup is the uid-wide sweep alone.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
RUNTIME = os.path.dirname(HERE)
WORKER = os.path.join(RUNTIME, "local_worker.py")
_public_copy: list[str] = []


def public_worker() -> str:
    """The deployed posture runs the runner as a non-root uid, which may not be able to read a
    checkout under a private directory (e.g. /root): it runs from a world-readable copy."""
    if not _public_copy:
        import atexit
        import tempfile
        base = tempfile.mkdtemp(prefix="sbx-runtime-")
        os.chmod(base, 0o755)
        dest = os.path.join(base, "python-runtime")
        shutil.copytree(RUNTIME, dest, ignore=shutil.ignore_patterns("tests", "__pycache__", ".pytest_cache"))
        for root, dirs, files in os.walk(dest):
            os.chmod(root, 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
        atexit.register(shutil.rmtree, base, True)
        _public_copy.append(os.path.join(dest, "local_worker.py"))
    return _public_copy[0]


def lambda_env_script() -> str:
    return os.path.join(os.path.dirname(public_worker()), "emulation", "lambda_env.py")
PYTHON = os.environ.get("SANDBOX_TEST_PYTHON", "/usr/bin/python3")
SECRET = "hunter2-SECRET-7f3a9c"
NOBODY = 65534
SLOT_UID = 61017


_next_uid = [63000]
_root_workers = [0]


class Worker:
    def __init__(self, posture: str, extra_env: dict | None = None):
        self.posture = posture
        # Deployed posture runs like Lambda: one uid for runner and child, and the runner is that
        # uid's only tenant (SANDBOX_UID_EXCLUSIVE). Each worker gets its own uid so that
        # workers alive at the same time never sweep each other.
        self.uid = NOBODY
        if posture in ("deployed", "lambda") and os.geteuid() == 0:
            _next_uid[0] += 1
            self.uid = _next_uid[0]
        # Root workers alive at the same time must not share slot uids (start-up kills them all).
        self.slot_uid = SLOT_UID if _root_workers[0] == 0 else 61100 + 8 * _root_workers[0]
        if posture == "root":
            _root_workers[0] += 1
        self.scratch = f"/tmp/sbx-test-{posture}-{os.getpid()}-{time.monotonic_ns()}"
        env = {
            "PATH": "/usr/bin:/bin",
            "SANDBOX_SCRATCH_ROOT": self.scratch,
            "SANDBOX_SLOT_UID": str(self.slot_uid),
            "SANDBOX_POSTURE": posture,
            # Secrets a block must never see: the runner holds them like Lambda's credentials.
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_SESSION_TOKEN": SECRET,
            "PROVIDER_API_KEY": SECRET,
        }
        if posture == "deployed":
            env["SANDBOX_WIPE_TMP"] = "1"
            env["SANDBOX_UID_EXCLUSIVE"] = "1"
        env.update(extra_env or {})
        kwargs = {}
        if posture == "deployed" and os.geteuid() == 0:
            kwargs = {"user": self.uid, "group": self.uid, "extra_groups": []}
        worker = public_worker() if kwargs else WORKER
        argv = [PYTHON, "-B", worker]
        if posture == "lambda":
            # Built as root, then exec'd as the uid: the worker's pid is the runner's.
            env.update({"SANDBOX_LAMBDA_UID": str(self.uid), "SANDBOX_LAMBDA_EXEC": public_worker()})
            argv = [PYTHON, "-B", lambda_env_script()]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, cwd="/", **kwargs)
        hello = self._read()
        if "fatal" in hello:
            raise RuntimeError(hello["fatal"])
        self.layers = hello["ready"]["layers"]
        self.refused = hello["ready"].get("refused", {})
        self.zygote_pid = hello["ready"]["zygote"]["pid"]
        self.runner_pid = self.proc.pid

    def _read(self) -> dict:
        head = self.proc.stdout.read(4)
        if len(head) < 4:
            raise EOFError("worker exited")
        (n,) = struct.unpack(">I", head)
        return json.loads(self.proc.stdout.read(n))

    def raw(self, payload: object, tenant: str = "org_test") -> dict:
        data = json.dumps({"payload": payload, "tenant_id": tenant}).encode()
        self.proc.stdin.write(struct.pack(">I", len(data)) + data)
        self.proc.stdin.flush()
        reply = self._read()
        # The worker cleans up after replying and then says it is idle.
        assert self._read() == {"idle": True}
        return reply

    def run(self, code: str, **fields) -> dict:
        reply = self.raw({"version": 1, "request_id": "test", "code": code, **fields})
        assert "result" in reply, reply
        from sandbox.contract import validate_result
        validate_result(reply["result"])  # every result the runner sends keeps the contract
        return reply["result"]

    def settle(self) -> None:
        """The reply goes out before the block's cleanup; a probe is answered only after it."""
        reply = self.raw({"version": 1, "request_id": "probe", "code": "", "action": "probe"})
        assert "result" in reply, reply
        self.zygote_pid = reply["result"]["zygote"]["pid"]  # a block may have killed the last one

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.scratch, ignore_errors=True)


def postures() -> list[str]:
    if os.geteuid() == 0:
        return ["root", "deployed", "lambda"]
    return ["deployed"]


@pytest.fixture(scope="module", params=postures())
def worker(request):
    w = Worker(request.param)
    yield w
    w.close()


@pytest.fixture
def fresh_worker(request):
    made = []

    def make(posture: str, **env) -> Worker:
        w = Worker(posture, env)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def texts(result: dict, source: str | None = None) -> str:
    return "".join(o["text"] for o in result["outputs"] if o["type"] == "text" and (source is None or o["source"] == source))


def errors(result: dict) -> list[dict]:
    return [o for o in result["outputs"] if o["type"] == "error"]


def block_uids(w: Worker) -> list[int]:
    if w.posture == "root":
        return [w.slot_uid + k for k in range(8)]
    return [w.uid if os.geteuid() == 0 else os.geteuid()]


def survivors(w: Worker) -> list[int]:
    """Processes of the blocks' uids other than the worker's own runner, zygote and standbys.

    A killed process may take a few milliseconds to finish dying (it can no longer run code):
    allow up to a second for it to be gone."""
    from sandbox.runner import live_pids_of_uid

    w.settle()
    deadline = time.monotonic() + 1.0
    while True:
        own = {w.runner_pid, w.zygote_pid}
        own |= {int(p) for p in _children(w.zygote_pid)}
        found = [p for uid in block_uids(w) for p in live_pids_of_uid(uid) if p not in own]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def _children(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return f.read().split()
    except OSError:
        return []


sys.path.insert(0, os.path.dirname(HERE))
