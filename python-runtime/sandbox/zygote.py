"""The zygote: imports the scientific stack once, then forks one standby child per request.

Started by the runner with execve, flags -I -B and a minimal environment, so it holds no
credential and nothing a child could read. It never runs user code. Its only channel is a
SOCK_SEQPACKET socket (fd from SANDBOX_ZYGOTE_FD) to the runner:
  runner -> zygote: {"fork": uid|null}          fork a standby (that drops to uid, as root)
  zygote -> runner: {"hello": {...}}             once, after imports
  zygote -> runner: {"pid": N} + 4 fds           a new standby: job_w, result_r, stdout_r, stderr_r
  zygote -> runner: {"exit": N, "status": S}     a child ended (wait status)
"""
from __future__ import annotations

import array
import json
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_t0 = time.monotonic()
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402,F401
import numpy  # noqa: E402,F401
import pandas  # noqa: E402,F401
import scipy  # noqa: E402,F401
import scipy.stats  # noqa: E402,F401
import sympy  # noqa: E402,F401
import cloudpickle  # noqa: E402,F401
import multiprocessing.synchronize  # noqa: E402,F401

from sandbox import cell, child, kernel, settings  # noqa: E402
from sandbox.layers import LayerRecord  # noqa: E402

IMPORT_MS = round((time.monotonic() - _t0) * 1000)


def _explain_missing_shm() -> None:
    """Without /dev/shm (AWS Lambda, the lambda posture) multiprocessing's locks, queues and pools
    cannot be made: say so, and what works instead, rather than a bare FileNotFoundError."""
    if os.path.isdir("/dev/shm"):
        return
    semlock = multiprocessing.synchronize.SemLock
    make = semlock.__init__

    def __init__(self, *args, **kwargs):
        try:
            make(self, *args, **kwargs)
        except OSError as exc:
            raise type(exc)(exc.errno, "multiprocessing's locks, queues and pools (Pool, Queue, Lock, "
                            "ProcessPoolExecutor) need /dev/shm, which this sandbox does not have (as in "
                            "AWS Lambda): use concurrent.futures.ThreadPoolExecutor, or "
                            "multiprocessing.Process with a Pipe") from None

    semlock.__init__ = __init__


_explain_missing_shm()
CELL = cell.prepare(json.loads(os.environ.get("SANDBOX_ZYGOTE_CONFIG", "{}")).get("cell", "ipython"))
settings.find_generators()
settings.capture_baseline()
CELL_MS = round((time.monotonic() - _t0) * 1000) - IMPORT_MS
THP_MB = kernel.collapse_heap_to_hugepages()


def _send(ctl: socket.socket, obj: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(obj).encode()
    if fds:
        ctl.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        ctl.send(data)


def main() -> None:
    conf = json.loads(os.environ["SANDBOX_ZYGOTE_CONFIG"])
    ctl = socket.socket(fileno=int(os.environ["SANDBOX_ZYGOTE_FD"]))
    record = LayerRecord()
    # Nothing secret lives here (clean environment), but a same-uid block must not ptrace it.
    record.attempt("zygote_nondumpable", lambda: kernel.set_dumpable(False), lambda: not kernel.is_dumpable())
    # Die with the runner: a zygote must never outlive the process that polices its children.
    # Lambda refuses PR_SET_PDEATHSIG; then the end of the control socket (EOF, below) ends it.
    record.attempt("pdeathsig", lambda: kernel.set_parent_death_signal(signal.SIGKILL))
    if os.getppid() != int(conf.get("runner_pid", os.getppid())):
        return  # the runner died before the signal was armed
    prog = kernel.build_filter() if conf["layers"].get("seccomp") else None

    def reap(_sig=None, _frame=None) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            try:
                _send(ctl, {"exit": pid, "status": status})
            except OSError:
                return

    signal.signal(signal.SIGCHLD, reap)
    _send(ctl, {"hello": {**record.to_json(), "pid": os.getpid(), "import_ms": IMPORT_MS, "cell_ms": CELL_MS,
                          "thp_mb": THP_MB, "python": sys.version.split()[0],
                          "numpy": numpy.__version__, "pandas": pandas.__version__, **CELL}})
    while True:
        try:
            msg = ctl.recv(256)
        except InterruptedError:
            continue
        except OSError:
            return
        if not msg:
            return
        try:
            uid = json.loads(msg)["fork"]
        except (ValueError, KeyError, TypeError):
            continue
        # What C code left in libc's buffers here must not reach a block (the child flushes them
        # into its stdout at its end).
        kernel.flush_c_stdio()
        job_r, job_w = os.pipe()
        result_r, result_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                child.standby_and_run(conf, uid, job_r, result_w, stdout_w, stderr_w, prog)
            except BaseException:
                # fd 2 is the block's stderr pipe by now (or the runner's stderr): say why.
                try:
                    import traceback
                    os.write(2, traceback.format_exc().encode()[-4000:])
                finally:
                    os._exit(70)
            os._exit(0)
        for fd in (job_r, result_w, stdout_w, stderr_w):
            os.close(fd)
        try:
            _send(ctl, {"pid": pid}, [job_w, result_r, stdout_r, stderr_r])
        except OSError:
            return  # the runner is gone
        for fd in (job_w, result_r, stdout_r, stderr_r):
            os.close(fd)


if __name__ == "__main__":
    main()
