"""The child: set up isolation while on standby, then run exactly one code block and die.

Runs inside a process forked from the zygote, so it already holds numpy, pandas, scipy, sympy
and matplotlib. Everything here before `read job` happens off the critical path.
"""
from __future__ import annotations

import ast
import builtins
import io
import json
import linecache
import os
import pickle
import resource
import signal
import struct
import sys
import traceback
import types

from . import frames, kernel, paths
from .layers import LayerRecord

CELL = "<cell>"
MAX_JOB_BYTES = 64 << 20
# Buffers at least this large (numpy/pandas data) leave the pickle as parts of their own, so an
# unchanged one is recognised by its SHA-256 and never travels again.
OUT_OF_BAND_MIN = 256 << 10


class Limits:
    """Per-block limits; the payload may tighten the configured defaults, never loosen them."""

    FIELDS = ("timeout_ms", "memory_mb", "max_processes", "max_file_bytes", "max_open_files",
              "max_output_bytes", "max_files", "max_files_bytes", "max_state_bytes")

    def __init__(self, values: dict):
        for name in self.FIELDS:
            setattr(self, name, int(values[name]))

    def tightened(self, requested: dict | None) -> "Limits":
        merged = {name: getattr(self, name) for name in self.FIELDS}
        for name, value in (requested or {}).items():
            if name in merged and isinstance(value, int) and 0 < value < merged[name]:
                merged[name] = value
        return Limits(merged)


def _vm_size_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _uid_task_count(uid: int) -> int:
    """Tasks of the uid now, the base RLIMIT_NPROC is set on: zombies and dying processes (an
    earlier block's, killed, still tearing memory down, or orphans PID 1 has not reaped yet)
    included, since the kernel counts them until they are reaped. Their reaping during the block
    gives it that much more room; leaving them out would refuse its forks until PID 1 reaps."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                text = f.read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1 ").split()[0]) == uid:
            count += int(fields.get("Threads", "1").strip())
    return count


def _close_other_fds(keep: set[int]) -> None:
    top = 3
    for fd in sorted(keep):
        if fd >= top:
            os.closerange(top, fd)
            top = fd + 1
    os.closerange(top, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _set_limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def apply_rlimits(limits: Limits, nproc_base: int | None) -> None:
    """setrlimit for the block (soft = hard, so the block cannot raise them). nproc_base: tasks
    of the uid to allow on top of (None: RLIMIT_NPROC not set yet; a shared uid sets it when the
    job arrives, counting what exists then, zombies included, since the kernel counts them)."""
    _set_limit(resource.RLIMIT_CORE, 0)
    # RLIMIT_AS counts the inherited, pre-imported address space: budget on top of it.
    _set_limit(resource.RLIMIT_AS, _vm_size_bytes() + limits.memory_mb * (1 << 20))
    _set_limit(resource.RLIMIT_FSIZE, limits.max_file_bytes)
    _set_limit(resource.RLIMIT_NOFILE, limits.max_open_files)
    _set_limit(resource.RLIMIT_CPU, limits.timeout_ms // 1000 + 2)
    # NPROC counts every task of the uid; a shared uid (Lambda) already has the runner's.
    if nproc_base is not None:
        _set_limit(resource.RLIMIT_NPROC, nproc_base + limits.max_processes)


_REFUSED = {
    "socket.__new__": "network access is disabled in the sandbox",
    "socket.socket": "network access is disabled in the sandbox",
    "subprocess.Popen": "starting programs is disabled in the sandbox",
    "os.system": "starting programs is disabled in the sandbox",
    "os.exec": "starting programs is disabled in the sandbox",
    "os.posix_spawn": "starting programs is disabled in the sandbox",
    "os.spawn": "starting programs is disabled in the sandbox",
    "pty.spawn": "starting programs is disabled in the sandbox",
    "ctypes.dlopen": "loading native libraries is disabled in the sandbox",
}


def _audit(event: str, _args: tuple) -> None:
    # Friendly errors only: audit hooks are not a security boundary (seccomp and the process are).
    message = _REFUSED.get(event)
    if message is not None:
        raise PermissionError(message)


def become_standby(conf: dict, drop_uid: int | None, job_r: int, result_w: int, stdio_w: int,
                   seccomp_prog: bytes | None) -> None:
    """Everything that isolates the block, done before the job arrives.

    Each layer is attempted and recorded (LayerRecord): a refusal (e.g. Lambda's seccomp profile
    answering EPERM to no_new_privs or a nested filter) is reported, not fatal; the runner
    decides against its required set. The READY frame carries {"layers": {...}, "refused": {...}}."""
    record = LayerRecord()
    layers = record.granted
    os.setsid()
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(stdio_w, 1)
    os.dup2(stdio_w, 2)
    _close_other_fds({job_r, result_w})
    layers["close_fds"] = True

    scratch = os.path.join(conf["scratch_root"], str(os.getpid()))
    os.mkdir(scratch, 0o700)
    if drop_uid is not None:
        # Root's and sticky, writable by the block's group: the block creates files but cannot
        # delete, rename or chmod the runner's read-only inputs placed here.
        os.chown(scratch, 0, drop_uid)
        os.chmod(scratch, 0o1770)
    if conf["layers"].get("netns"):
        record.attempt("netns", kernel.unshare_net)

    limits = Limits(conf["limits"])
    global _nproc_base
    # A slot uid holds no process before its standby drops to it (the runner verified that). A
    # shared uid's count is only known when the job arrives (standbys come and go, and without a
    # subreaper an earlier block's orphans may linger as zombies): its hard limit is set then, as
    # setting it lower now could not be undone.
    _nproc_base = 0
    apply_rlimits(limits, 0 if drop_uid is not None else None)
    layers["rlimits"] = True
    if drop_uid is not None:
        os.setgroups([])
        os.setresgid(drop_uid, drop_uid, drop_uid)
        os.setresuid(drop_uid, drop_uid, drop_uid)
        layers["uid"] = drop_uid
    os.chdir(scratch)
    os.environ.clear()
    os.environ.update({"HOME": scratch, "TMPDIR": scratch, "PATH": "/usr/local/bin:/usr/bin:/bin",
                       "LANG": "C.UTF-8", "MPLBACKEND": "Agg"})
    import tempfile
    tempfile.tempdir = scratch

    if conf["layers"].get("no_new_privs"):
        record.attempt("no_new_privs", kernel.set_no_new_privs, kernel.has_no_new_privs)
    if seccomp_prog is not None:
        record.attempt("seccomp", lambda: kernel.load_filter(seccomp_prog))
    if conf["layers"].get("audit_hook", True):
        sys.addaudithook(_audit)
        layers["audit_hook"] = True
    _reseed_inherited_random_state()
    frames.write_json(result_w, frames.READY, record.to_json())


def _reseed_inherited_random_state() -> None:
    """Every child inherits the zygote's numpy global RandomState, so without this each block
    drew the same "random" numbers (issue 13). Python's `random` reseeds itself at fork; numpy's
    legacy global state does not. Seeded from the OS's entropy, as a fresh interpreter is."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


_nproc_base = 0


class _FrameStream(io.TextIOBase):
    """sys.stdout/sys.stderr: each write becomes a frame, so order and partial output survive."""

    def __init__(self, sink: "_Sink", kind: bytes, name: str):
        self._sink, self._kind, self._name = sink, kind, name

    @property
    def name(self) -> str:  # some libraries inspect it
        return f"<{self._name}>"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._sink.text(self._kind, text)
        return len(text)

    def flush(self) -> None:
        pass


class _Sink:
    """Sends frames to the runner; stops sending text past the limit and counts what it drops."""

    def __init__(self, fd: int, limits: Limits):
        self.fd = fd
        self.budget = limits.max_output_bytes
        self.dropped = 0
        self.reported = 0

    def text(self, kind: bytes, text: str) -> None:
        data = text.encode("utf-8", "replace")
        if len(data) > self.budget:
            self.dropped += len(data) - max(self.budget, 0)
            data = data[: max(self.budget, 0)]
            if data:
                frames.write_frame(self.fd, kind, data)
            # The count so far, now and then: a block that times out never sends its done frame.
            if self.budget >= 0 or self.dropped - self.reported >= 1 << 16:
                frames.write_frame(self.fd, frames.TRUNCATED, str(self.dropped).encode())
                self.reported = self.dropped
            self.budget = -1
            return
        if data:
            self.budget -= len(data)
            frames.write_frame(self.fd, kind, data)

    def send(self, kind: bytes, payload: bytes) -> None:
        frames.write_frame(self.fd, kind, payload)


def _format_value(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a broken __repr__ must not fail the block
        return f"<unrepresentable {type(value).__name__}: {exc!r}>"


_OWN_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the user's first line on, without the sandbox's own frames."""
    if isinstance(exc, SyntaxError):
        return "".join(traceback.format_exception_only(type(exc), exc))
    summary = traceback.extract_tb(exc.__traceback__)
    start = next((i for i, f in enumerate(summary) if f.filename == CELL), 0)
    kept = [f for f in summary[start:] if not f.filename.startswith(_OWN_DIR)]
    lines = ["Traceback (most recent call last):\n"] if kept else []
    lines += traceback.StackSummary.from_list(kept).format()
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def _emit_figures(sink: _Sink) -> None:
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in plt.get_fignums():
        fig = plt.figure(num)
        buf = io.BytesIO()
        try:
            fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        except Exception as exc:
            sink.text(frames.NOTICE, f"[a figure could not be rendered: {exc}]\n")
            continue
        finally:
            plt.close(fig)
        sink.send(frames.IMAGE, buf.getvalue())


def _load_state(ns: dict, parts: list[bytearray], sink: _Sink) -> None:
    import cloudpickle  # noqa: F401  (cloudpickle registers reducers used by loads)
    try:
        # Writable buffers: arrays restored from them are writable, without a copy.
        ns.update(pickle.loads(parts[0], buffers=parts[1:]))
    except Exception as exc:
        sink.text(frames.NOTICE, f"[the saved Python state could not be restored: {type(exc).__name__}: {exc}]\n")


def _pickle_parts(obj: object, known: set[str], slots: int) -> tuple[bytes, list]:
    """cloudpickle protocol 5 with large buffers out of band: (main, [(sha256, size, view|None)]).

    A buffer equal to a part the block received is only referenced (view None). With upload
    slots, at most slots - 1 new buffers go out of band (one slot stays for the main pickle);
    the others stay in band rather than be refused for want of a slot."""
    import cloudpickle
    import hashlib
    parts: list = []
    new: set[str] = set()

    def out_of_band(buf: pickle.PickleBuffer) -> bool:
        if len(parts) >= frames.MAX_STATE_PARTS - 1:
            return True
        try:
            raw = buf.raw()
        except (BufferError, ValueError):
            return True
        if raw.nbytes < OUT_OF_BAND_MIN:
            return True
        sha = hashlib.sha256(raw).hexdigest()
        if sha in known:
            parts.append((sha, raw.nbytes, None))
            return False
        # A second new copy of the same bytes stays in band: a part is stored once.
        if sha in new or (slots and len(new) >= slots - 1):
            return True
        new.add(sha)
        parts.append((sha, raw.nbytes, raw))
        return False

    main = cloudpickle.dumps(obj, protocol=5, buffer_callback=out_of_band)
    return main, parts


def _dump_state(ns: dict, sink: _Sink, limit: int, known: set[str], slots: int) -> None:
    import cloudpickle
    import hashlib
    keep = {k: v for k, v in ns.items() if not k.startswith("__") and k not in ("display",)}
    try:
        main, parts = _pickle_parts(keep, known, slots)
    except Exception:
        dropped = []
        for name in list(keep):
            try:
                # Buffers out of band: checks picklability without copying large arrays.
                cloudpickle.dumps(keep[name], protocol=5, buffer_callback=lambda _b: False)
            except Exception as exc:
                dropped.append(f"{name} ({type(keep[name]).__name__}: {type(exc).__name__})")
                del keep[name]
        try:
            main, parts = _pickle_parts(keep, known, slots)
        except Exception as exc:
            sink.text(frames.NOTICE, f"[Python state was not saved: {type(exc).__name__}: {exc}]\n")
            return
        sink.text(frames.NOTICE, "[not kept for the next block (cannot be serialized): " + ", ".join(dropped) + "]\n")
    total = len(main) + sum(size for _sha, size, _view in parts)
    if total > limit:
        sink.text(frames.NOTICE, f"[Python state was not saved: {total} bytes exceeds the {limit}-byte limit]\n")
        return
    main_sha = hashlib.sha256(main).hexdigest()
    manifest = [{"sha256": main_sha, "bytes": len(main), "ref": main_sha in known}]
    manifest += [{"sha256": sha, "bytes": size, "ref": view is None} for sha, size, view in parts]
    frames.write_json(sink.fd, frames.STATE, {"parts": manifest})
    if main_sha not in known:
        sink.send(frames.PART, main)
    for _sha, _size, view in parts:
        if view is not None:
            sink.send(frames.PART, view)


def run_job(job: dict, result_w: int, limits: Limits) -> str:
    sink = _Sink(result_w, limits)
    out = _FrameStream(sink, frames.STDOUT, "stdout")
    err = _FrameStream(sink, frames.STDERR, "stderr")
    sys.stdout, sys.stderr = out, err
    ns: dict = {"__name__": "__main__", "__builtins__": builtins}

    def display(*objs: object) -> None:
        for obj in objs:
            sink.text(frames.RESULT, _format_value(obj))

    ns["display"] = display
    known: set[str] = set()
    # Only the namespace keeps the parts alive: a variable the block deletes frees its memory.
    parts = job.pop("_parts", None)
    if parts:
        _load_state(ns, parts, sink)
        known = {p["sha256"] for p in job["state"]}
    del parts

    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.show = lambda *a, **k: _emit_figures(sink)

    code = job["code"]
    linecache.cache[CELL] = (len(code), None, code.splitlines(True), CELL)
    status = "completed"
    try:
        tree = ast.parse(code, filename=CELL, mode="exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = tree.body.pop()
        exec(compile(tree, CELL, "exec"), ns)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), CELL, "eval"), ns)
            if value is not None:
                sink.text(frames.RESULT, _format_value(value))
    except SystemExit as exc:
        if exc.code not in (None, 0):
            status = "failed"
            frames.write_json(result_w, frames.ERROR, {"name": "SystemExit", "message": str(exc.code),
                                                       "traceback": _user_traceback(exc)})
    except BaseException as exc:  # the user's error is a result, not a crash
        status = "failed"
        frames.write_json(result_w, frames.ERROR, {"name": type(exc).__name__, "message": str(exc),
                                                   "traceback": _user_traceback(exc)})
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    _emit_figures(sink)
    if job.get("want_state"):
        _dump_state(ns, sink, limits.max_state_bytes, known, int(job.get("state_slots") or 0))
    frames.write_json(result_w, frames.DONE, {"status": status, "dropped": sink.dropped})
    return status


def _empty_working_directory(inputs: list[str]) -> None:
    """A same-uid block (deployed posture) may have planted files in a standby's directory;
    the runner placed the inputs just now."""
    paths.empty(".", keep=set(inputs))


def _read_parts(fd: int, specs: list[dict]) -> list[bytearray]:
    """The state's parts follow the job, each length-prefixed, read straight into its buffer."""
    parts = []
    for spec in specs:
        (size,) = struct.unpack(">I", frames.read_exact(fd, 4))
        if size != spec["bytes"]:
            raise ValueError("state part of the wrong size")
        buf = bytearray(size)
        frames.read_into(fd, buf)
        parts.append(buf)
    return parts


def standby_and_run(conf: dict, drop_uid: int | None, job_r: int, result_w: int, stdio_w: int,
                    seccomp_prog: bytes | None) -> None:
    global _nproc_base
    become_standby(conf, drop_uid, job_r, result_w, stdio_w, seccomp_prog)
    try:
        job = json.loads(frames.read_message(job_r, MAX_JOB_BYTES))
        parts = _read_parts(job_r, job.get("state") or [])
    except (EOFError, ValueError, MemoryError):
        os._exit(0)
    os.close(job_r)
    _empty_working_directory(job.get("inputs") or [])
    limits = Limits(conf["limits"]).tightened(job.get("limits"))
    if drop_uid is None:
        # One uid for all (deployed): count what exists now, not what existed on standby.
        _nproc_base = _uid_task_count(os.getuid())
        apply_rlimits(limits, _nproc_base)
    elif any(getattr(limits, name) != conf["limits"][name] for name in Limits.FIELDS):
        apply_rlimits(limits, _nproc_base)
    job["_parts"] = parts
    del parts
    run_job(job, result_w, limits)
    # Tearing down a copy of the pre-imported stack takes milliseconds of kernel time: let the
    # next block, the runner and the API have the CPU first.
    try:
        os.nice(19)
    except OSError:
        pass
    os._exit(0)
