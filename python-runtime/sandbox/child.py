"""The child: set up isolation while on standby, then run exactly one code block and die.

Runs inside a process forked from the zygote, so it already holds numpy, pandas, scipy, sympy,
matplotlib and the cell machinery (cell.py). Everything here before `read job` happens off the
critical path. The block's fd 1 and fd 2 are two pipes the runner reads (stdio.py); what it
shows besides (results, displays, images, errors) goes to the runner as frames on the result pipe.
"""
from __future__ import annotations

import base64
import json
import os
import pickle
import resource
import signal
import struct
import sys
import threading
import time
import traceback

from . import cell, frames, kernel, paths, settings, stdio
from .cell import CELL
from .layers import LayerRecord
MAX_JOB_BYTES = 64 << 20
# Buffers at least this large (numpy/pandas data) leave the pickle as parts of their own, so an
# unchanged one is recognised by its SHA-256 and never travels again.
OUT_OF_BAND_MIN = 256 << 10
# The session state's entry for the module-level settings (settings.py): not a Python name, so it
# never meets one of the block's.
SETTINGS_KEY = "\x00settings"
# Threads the block leaves running are waited for until the time limit less this (seconds, at most
# a fifth of the limit): the state and the done frame still go out before the runner's deadline.
THREAD_RESERVE_S = 2.0
_PNG = b"\x89PNG\r\n\x1a\n"


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
    # A socket pair (allowed) must not be pointed at a path or an address.
    "socket.connect": "network access is disabled in the sandbox",
    "socket.bind": "network access is disabled in the sandbox",
    "socket.sendto": "network access is disabled in the sandbox",
    "subprocess.Popen": "starting programs is disabled in the sandbox",
    "os.system": "starting programs is disabled in the sandbox",
    "os.exec": "starting programs is disabled in the sandbox",
    "os.posix_spawn": "starting programs is disabled in the sandbox",
    "os.spawn": "starting programs is disabled in the sandbox",
    "pty.spawn": "starting programs is disabled in the sandbox",
    "ctypes.dlopen": "loading native libraries is disabled in the sandbox",
}


def _from_socketpair() -> bool:
    """The socket being made wraps one end of socket.socketpair(): the audit hook is called from
    socket.socket.__init__, called by socket.socketpair."""
    sock_module = sys.modules.get("socket")
    where = getattr(sock_module, "__file__", None)
    try:
        frame = sys._getframe(2)
    except ValueError:
        return False
    for _ in range(3):
        if frame is None:
            return False
        if frame.f_code.co_name == "socketpair" and frame.f_code.co_filename == where:
            return True
        frame = frame.f_back
    return False


def _audit(event: str, args: tuple) -> None:
    # Friendly errors only: audit hooks are not a security boundary (seccomp and the process are).
    message = _REFUSED.get(event)
    if message is None:
        if event == "socket.sendmsg" and len(args) > 1 and args[1] is not None:
            raise PermissionError("network access is disabled in the sandbox")
        return
    # A connected pair of AF_UNIX sockets (asyncio's event loop, multiprocessing.Pipe) reaches
    # nothing outside the block; seccomp allows socketpair(AF_UNIX, stream or seqpacket) only.
    if event == "socket.__new__" and len(args) > 1 and args[1] == 1 and _from_socketpair():
        return
    raise PermissionError(message)


def become_standby(conf: dict, drop_uid: int | None, job_r: int, result_w: int, stdout_w: int,
                   stderr_w: int, seccomp_prog: bytes | None) -> None:
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
    os.dup2(stdout_w, 1)
    os.dup2(stderr_w, 2)
    _close_other_fds({job_r, result_w})
    stdio.install()
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
    _as_a_kernel_starts()
    frames.write_json(result_w, frames.READY, record.to_json())


def _as_a_kernel_starts() -> None:
    """What a fresh kernel has and a copy of the zygote does not: the working directory first on
    sys.path (the block imports its own files) and nothing of the sandbox there; every module-level
    random generator reseeded from the OS's entropy (the zygote's numpy RandomState, sympy's, ...
    would otherwise give each block the same numbers; issue 13)."""
    runtime = os.path.dirname(_OWN_DIR)
    sys.path[:] = [""] + [p for p in sys.path if p not in ("", runtime)]
    settings.reseed_and_mark()
    _warm()


def _warm() -> None:
    """Walk once, while on standby, the path every block takes (an empty block, the formatter): each
    first write to a page inherited from the zygote costs a page fault and a copy (~30 us apiece on
    a Firecracker VM such as Lambda's; a first result through IPython's formatter makes ~170), and
    made now they are off the block's time. Measured (tests/bench_cell.py): ~10 ms less per block
    that shows a value, for ~5-10 ms more CPU in the standby. Saving a session's state (cloudpickle,
    settings.collect) is not warmed: it cost more CPU in every standby than it saved in the blocks
    that keep state. Leaves no trace: no output, nothing in the namespace."""
    try:
        cell.warm_child()
    except Exception:
        pass


_nproc_base = 0


class _Sink:
    """Sends the block's frames to the runner (each after what fd 1 and fd 2 hold was read, so the
    order is the order of the writes); stops sending result text past the limit and counts what it
    drops. Receives what cell.py shows: bundle() and error()."""

    def __init__(self, fd: int, limits: Limits):
        self.fd = fd
        self.budget = limits.max_output_bytes
        self.dropped = 0
        self.reported = 0

    def _take(self, data: bytes) -> bytes:
        """data cut to what the budget still allows; the rest counted as dropped."""
        if len(data) <= self.budget:
            self.budget -= len(data)
            return data
        self.dropped += len(data) - max(self.budget, 0)
        kept = data[: max(self.budget, 0)]
        # The count so far, now and then: a block that times out never sends its done frame.
        if self.budget >= 0 or self.dropped - self.reported >= 1 << 16:
            self.send(frames.TRUNCATED, str(self.dropped).encode())
            self.reported = self.dropped
        self.budget = -1
        return kept

    def text(self, kind: bytes, text: str) -> None:
        data = self._take(text.encode("utf-8", "replace"))
        if data:
            self.send(kind, data)

    def notice(self, text: str) -> None:
        """A note from the sandbox itself (not counted against the output limit)."""
        self.send(frames.NOTICE, text.encode("utf-8", "replace")[: 60 << 10])

    def send(self, kind: bytes, payload) -> None:
        if kind not in (frames.STATE, frames.PART, frames.DONE):
            stdio.settle_for_frame()
        frames.write_frame(self.fd, kind, payload)

    def bundle(self, data: dict, result: bool) -> None:
        """One displayed value (an execute_result when result, else a display_data) as Jupyter
        keeps it: text/plain and the richer forms in RICH travel as one display frame, an
        image/png as an image frame after it (a bundle of only text and a PNG, such as a figure's,
        is only the image)."""
        text = data.get("text/plain")
        text = text if isinstance(text, str) else ""
        rich = {}
        for mime in cell.RICH:
            value = data.get(mime)
            if value is None:
                continue
            if mime == "application/json":
                try:
                    json.dumps(value)
                except (TypeError, ValueError):
                    continue
            elif not isinstance(value, str):
                continue
            rich[mime] = value
        png = data.get("image/png")
        if isinstance(png, str):
            try:
                png = base64.b64decode(png, validate=False)
            except ValueError:
                png = None
        if not isinstance(png, (bytes, bytearray)) or not bytes(png[:8]) == _PNG:
            png = None
        if png is None or rich:
            text_bytes = text.encode("utf-8", "replace")
            rich_bytes = sum(len(json.dumps(v, ensure_ascii=False).encode("utf-8", "replace")) for v in rich.values())
            if rich and len(text_bytes) + rich_bytes > self.budget:
                self.dropped += rich_bytes  # the richer forms go first; the text is kept as far as it fits
                rich = {}
            kept = self._take(text_bytes)
            if kept or rich:
                body = {"text": kept.decode("utf-8", "ignore")}
                if rich:
                    body["mime"] = rich
                    self.budget -= rich_bytes
                self.send(frames.DISPLAY, json.dumps(body, ensure_ascii=False).encode("utf-8", "replace"))
        if png is not None:
            self.send(frames.IMAGE, bytes(png))

    def error(self, exc: BaseException) -> None:
        name = type(exc).__name__
        message = str(exc.code) if isinstance(exc, SystemExit) else _message(exc)
        self.send(frames.ERROR, json.dumps({"name": name, "message": message,
                                            "traceback": _user_traceback(exc)}, separators=(",", ":")).encode())


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception as inner:  # a broken __str__ must not fail the report
        return f"<unprintable {type(exc).__name__}: {inner!r}>"


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


def _load_state(ns: dict, parts: list[bytearray], sink: _Sink) -> None:
    import cloudpickle  # noqa: F401  (cloudpickle registers reducers used by loads)
    try:
        # Writable buffers: arrays restored from them are writable, without a copy.
        saved = pickle.loads(parts[0], buffers=parts[1:])
    except Exception as exc:
        sink.notice(f"[the saved Python state could not be restored: {type(exc).__name__}: {exc}]")
        return
    kept = saved.pop(SETTINGS_KEY, None)
    ns.update(saved)
    if isinstance(kept, dict):
        failed = settings.apply(kept, os.getcwd())
        if failed:
            sink.notice("[settings of the last block not restored: " + ", ".join(failed) + "]")


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
    keep = {k: v for k, v in ns.items() if not cell.hidden(k, v)}
    kept_settings, not_kept = settings.collect(os.getcwd())
    if kept_settings:
        keep[SETTINGS_KEY] = kept_settings
    dropped = list(not_kept)
    try:
        main, parts = _pickle_parts(keep, known, slots)
    except Exception:
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
            sink.notice(f"[Python state was not saved: {type(exc).__name__}: {exc}]")
            return
    if dropped:
        sink.notice("[not kept for the next block (cannot be serialized): " + ", ".join(dropped) + "]")
    total = len(main) + sum(size for _sha, size, _view in parts)
    if total > limit:
        sink.notice(f"[Python state was not saved: {total} bytes exceeds the {limit}-byte limit]")
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


def _wait_for_threads(before: set, deadline: float, sink: _Sink) -> bool:
    """Threads the block started and left running: those a Python program would wait for at its
    end (not daemon) are waited for until deadline (time.monotonic() seconds), so their output is
    kept; threading's exit hooks run first, as at interpreter exit (an executor nobody shut down
    lets its idle workers go). A notice names what was still running. True if any thread ran on
    after the code's last line."""
    waiting, daemons = cell.threads_of_block(before)
    if not waiting and not daemons:
        return False
    hooks = list(getattr(threading, "_threading_atexits", ()))
    if waiting and hooks:
        def run_hooks() -> None:
            for hook in reversed(hooks):
                try:
                    hook()
                except Exception:
                    pass
        threading.Thread(target=run_hooks, name="sandbox-exit-hooks", daemon=True).start()
    for t in waiting:
        t.join(max(0.0, deadline - time.monotonic()))
    waiting, daemons = cell.threads_of_block(before)
    daemons = [t for t in daemons if t.name != "sandbox-exit-hooks"]
    if waiting:
        sink.notice(f"[{len(waiting)} thread(s) of the block were still running at its time limit "
                    f"({', '.join(t.name for t in waiting[:5])}): they were stopped, and what they "
                    "would have written later is not here]")
    if daemons:
        sink.notice(f"[{len(daemons)} daemon thread(s) were still running when the block ended "
                    f"({', '.join(t.name for t in daemons[:5])}): they were stopped with it, as at "
                    "the end of a Python program, and what they would have written later is not here]")
    return True


def run_job(job: dict, result_w: int, limits: Limits) -> str:
    started = time.monotonic()
    sink = _Sink(result_w, limits)
    ns = cell.namespace()
    known: set[str] = set()
    # Only the namespace keeps the parts alive: a variable the block deletes frees its memory.
    parts = job.pop("_parts", None)
    if parts:
        _load_state(ns, parts, sink)
        known = {p["sha256"] for p in job["state"]}
    del parts
    before = {t.ident for t in threading.enumerate()}
    status = cell.run(job["code"], sink)
    timeout = limits.timeout_ms / 1000
    if _wait_for_threads(before, started + timeout - min(THREAD_RESERVE_S, timeout / 5), sink):
        status = cell.end_figures()  # what the threads drew
    kernel.flush_c_stdio()
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


def standby_and_run(conf: dict, drop_uid: int | None, job_r: int, result_w: int, stdout_w: int,
                    stderr_w: int, seccomp_prog: bytes | None) -> None:
    global _nproc_base
    become_standby(conf, drop_uid, job_r, result_w, stdout_w, stderr_w, seccomp_prog)
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
