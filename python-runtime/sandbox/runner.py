"""The runner: the Lambda handler (trusted). One invocation runs one code block.

It owns the credentials of the environment, so it never runs user code and never forks a
process that will: blocks run in children of the zygote, which it starts with execve and a
minimal environment. See DESIGN.md "Isolation" and docs in README.md.
"""
from __future__ import annotations

import array
import base64
import codecs
import collections
import fcntl
import hashlib
import json
import logging
import mimetypes
import os
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time

from . import contract, frames, kernel, paths, transfer
from .config import Config

log = logging.getLogger("sandbox.runner")

ZYGOTE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zygote.py")
READY_TIMEOUT_S = 20.0
# Root posture: each worker owns this many consecutive uids from SANDBOX_SLOT_UID.
UIDS_PER_SLOT = 8
ZYGOTE_START_TIMEOUT_S = 120.0
# Caps on what an untrusted child may send per frame, by type (bytes).
JSON_FRAME_CAP = 256 << 10
# A new state part smaller than this travels inline in the result; a larger one takes an upload slot.
INLINE_PART_MAX = 64 << 10
# Pipes to a child hold this much (the default 64 KiB means a syscall per 64 KiB of state).
PIPE_BYTES = 1 << 20
_SHA256_HEX = frozenset("0123456789abcdef")


class InputFileError(Exception):
    """An input file could not be placed: the block does not run."""


class SandboxError(RuntimeError):
    """An infrastructure failure (not a failure of the user's code)."""


class TenantMismatch(SandboxError):
    pass


class Standby:
    def __init__(self, pid: int, uid: int | None, job_w: int, result_r: int, stdio_r: int):
        self.pid, self.uid, self.job_w, self.result_r, self.stdio_r = pid, uid, job_w, result_r, stdio_r
        self.layers: dict = {}
        self.ready = False

    def close(self) -> None:
        # Each closed once: a number closed twice may by then be another open file's.
        for name in ("job_w", "result_r", "stdio_r"):
            fd = getattr(self, name)
            setattr(self, name, -1)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass


class FrameReader:
    """Incremental, bounded parser of the child's frames.

    Small frames are parsed out of 64 KiB reads; a large frame's body is read straight into a
    buffer of its announced size (after the cap check), so tens of MB cost no repeated copying."""

    CHUNK = 1 << 16
    DIRECT = 1 << 20  # bodies at least this large are read in place

    def __init__(self, caps: dict[bytes, int]):
        self.buf = bytearray()
        self.caps = caps
        self.body: tuple[bytes, bytearray, int] | None = None

    def read_from(self, fd: int) -> list[tuple[bytes, bytes]] | None:
        """Read what fd has; the complete frames, or None at end of file."""
        if self.body is None:
            data = os.read(fd, self.CHUNK)
            return self.feed(data) if data else None
        kind, body, filled = self.body
        with memoryview(body) as view:
            n = os.readv(fd, [view[filled:]])
        if not n:
            return None
        filled += n
        if filled < len(body):
            self.body = (kind, body, filled)
            return []
        self.body = None
        return [(kind, body)]

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        assert self.body is None
        self.buf += data
        out = []
        pos = 0
        while len(self.buf) - pos >= frames.HEADER.size:
            kind, size = frames.HEADER.unpack_from(self.buf, pos)
            if kind not in self.caps:
                raise SandboxError(f"protocol violation: unknown frame type {kind!r}")
            if size > self.caps[kind]:
                raise SandboxError(f"protocol violation: {kind!r} frame of {size} bytes exceeds {self.caps[kind]}")
            start = pos + frames.HEADER.size
            have = len(self.buf) - start
            if have >= size:
                out.append((kind, bytes(self.buf[start:start + size])))
                pos = start + size
                continue
            if size >= self.DIRECT:
                body = bytearray(size)
                body[:have] = self.buf[start:]
                self.body = (kind, body, have)
                pos = len(self.buf)
            break
        if pos:
            del self.buf[:pos]
        return out


class Block:
    """What the runner learned of one block while reading its frames."""

    def __init__(self) -> None:
        self.status = "failed"          # until the child's done frame says otherwise
        self.done = False               # the child sent its done frame
        self.ended = False              # the child's pipe closed without one
        self.manifest: list[dict] | None = None  # the child's STATE frame: its parts, in order
        self.parts: list = []           # bytes of the manifest's parts that are not refs, in order
        self.expected: list[int] = []   # sizes of those parts
        self.allowed: dict[str, int] = {}  # parts the child was given (sha256 -> bytes): it may refer to these
        self.child_dropped = 0          # text the child itself dropped past the output limit


class Outputs:
    """Ordered output items with the text cap applied; nothing is cut silently."""

    def __init__(self, limits: dict):
        self.items: list[dict] = []
        self.text_budget = limits["max_output_bytes"]
        self.dropped = 0
        self.marker: dict | None = None
        self.limit = limits["max_output_bytes"]
        self.media_budget = self.media_bytes_limit = limits["max_files_bytes"]
        self.media_count = self.media_count_limit = limits["max_files"]
        # (item, source, size): the item gets `data` or `slot` when the result is put together.
        self.media_items: list[tuple[dict, object, int]] = []

    def text(self, source: str, text: str) -> None:
        if not text:
            return
        data = text.encode("utf-8", "replace")
        if len(data) > self.text_budget:
            self.dropped += len(data) - self.text_budget
            text = data[: self.text_budget].decode("utf-8", "ignore")
            self.text_budget = 0
            if text:
                self._append_text(source, text)
            self.truncated()
            return
        self.text_budget -= len(data)
        self._append_text(source, text)

    def truncated(self) -> None:
        if self.marker is None:
            self.marker = {"type": "text", "source": "sandbox", "text": ""}
            self.items.append(self.marker)

    def _append_text(self, source: str, text: str) -> None:
        last = self.items[-1] if self.items else None
        if last is not None and last is not self.marker and last["type"] == "text" and last["source"] == source:
            last["text"] += text
        else:
            self.items.append({"type": "text", "source": source, "text": text})

    def notice(self, text: str) -> None:
        self.items.append({"type": "text", "source": "sandbox", "text": text.rstrip("\n")})

    def media(self, item: dict, size: int, label: str, source) -> None:
        """source: the bytes, or a FileSource read only when the item is placed."""
        if self.media_count <= 0 or size > self.media_budget:
            self.notice(f"[{label} of {size} bytes was not returned: over the per-block limit of "
                        "files and images (count or bytes)]")
            if isinstance(source, FileSource):
                source.close()
            return
        self.media_count -= 1
        self.media_budget -= size
        self.items.append(item)
        self.media_items.append((item, source, size))

    def close(self) -> None:
        for _item, source, _size in self.media_items:
            if isinstance(source, FileSource):
                source.close()

    def error(self, name: str, message: str, tb: str) -> None:
        self.items.append({"type": "error", "name": name, "message": message, "traceback": tb})

    def finish(self, child_dropped: int = 0) -> list[dict]:
        self.dropped += child_dropped
        if self.dropped and self.marker is None:
            self.truncated()
        if self.marker is not None:
            self.marker["text"] = (f"[output truncated: {self.dropped} more bytes were dropped "
                                   f"(limit {self.limit} bytes per block)]")
        for item in self.items:
            if item["type"] == "text" and item["source"] in ("stdout", "stderr", "result") and item["text"].endswith("\n"):
                item["text"] = item["text"][:-1]
        return [i for i in self.items if not (i["type"] == "text" and i["text"] == "")]


class FileSource:
    """An output file, held open (read without following links) until it is placed."""

    def __init__(self, fd: int, size: int):
        self.fd, self.size = fd, size

    def chunks(self):
        """Exactly size bytes; a file that shrank meanwhile fails the upload, never pads it."""
        offset = 0
        while offset < self.size:
            chunk = os.pread(self.fd, min(transfer.CHUNK, self.size - offset), offset)
            if not chunk:
                raise OSError("the file shrank while it was read")
            offset += len(chunk)
            yield chunk

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _b64_len(n: int) -> int:
    return 4 * ((n + 2) // 3)


def _upper_size(result: dict) -> int:
    """An upper bound of the result's JSON size: JSON at most sextuples a character (a \\u escape),
    base64 is copied as is."""
    n = 1024
    for o in result["outputs"]:
        n += 200 + 6 * (len(o.get("text", "")) + len(o.get("traceback", "")) + len(o.get("message", ""))
                        + len(o.get("filename", ""))) + len(o.get("data", ""))
    for p in (result.get("state") or {}).get("parts", ()):
        n += 160 + len(p.get("data", ""))
    return n


def _json_size(result: dict) -> int:
    return len(json.dumps(result, separators=(",", ":")))


def _room(result: dict, limit: int, wanted: int) -> int:
    """What is left under limit for `wanted` more inline bytes (serializing only when close)."""
    upper = _upper_size(result)
    if upper + wanted <= limit:
        return limit - upper
    return limit - _json_size(result)


NOTICE_MARGIN = 4096  # for the notices that placing may still add


def _notice(result: dict, text: str) -> None:
    result["outputs"].append({"type": "text", "source": "sandbox", "text": text})


def place_state(block: "Block", limit: int, result: dict, slots: transfer.Slots, cache: transfer.PartCache) -> None:
    """Turn the child's state parts into result["state"]: an unchanged input part by reference,
    a new small one inline, a new large one in an upload slot (or inline while it fits). Either
    the whole state is saved or none of it, with a notice."""
    new = []
    out = []
    it = iter(block.parts)
    for entry in block.manifest:
        part = {"sha256": entry["sha256"], "bytes": entry["bytes"]}
        if not entry["ref"]:
            data = next(it)
            # The child's digest is never trusted: this one becomes a cache key.
            part["sha256"] = hashlib.sha256(data).hexdigest()
            new.append((part, data))
        out.append(part)
    large = sorted((p for p in new if p[0]["bytes"] >= INLINE_PART_MAX), key=lambda p: -p[0]["bytes"])
    to_slots, inline = large[:slots.free()], large[slots.free():]
    wanted = sum(_b64_len(p["bytes"]) for p, _ in new if p["bytes"] < INLINE_PART_MAX)
    wanted += sum(_b64_len(p["bytes"]) for p, _ in inline)
    if wanted and wanted + NOTICE_MARGIN > _room(result, limit, wanted + NOTICE_MARGIN):
        _notice(result, f"[Python state was not saved: {sum(p['bytes'] for p, _ in new)} bytes of new parts do not "
                        f"fit in the result, and {len(slots.urls)} upload slots were given]")
        return
    for part, data in to_slots:
        try:
            part["slot"] = slots.upload(data, len(data), "application/octet-stream")
        except transfer.TransferError as exc:
            _notice(result, f"[Python state was not saved: a part could not be uploaded ({exc})]")
            return
    for part, data in new:
        if "slot" not in part:
            part["data"] = base64.b64encode(data).decode()
        cache.put(part["sha256"], data)
    result["state"] = {"parts": out}


def place_media(result: dict, outputs: Outputs, limit: int, slots: transfer.Slots) -> None:
    """Files and images inline while the result stays under limit; larger ones (largest first)
    go to the next unused upload slot; with no slot left they are left out with a notice."""
    media = sorted(outputs.media_items, key=lambda m: -m[2])
    wanted = sum(_b64_len(size) + 16 for _i, _s, size in media)
    room = _room(result, limit, wanted + NOTICE_MARGIN) - NOTICE_MARGIN
    notes = []
    dropped: set[int] = set()
    for item, source, size in media:
        if wanted <= room:
            break
        wanted -= _b64_len(size) + 16
        label = f"file {item['filename']}" if item["type"] == "file" else "an image"
        if slots.free():
            mime = item["mime_type"] or "application/octet-stream"
            body = source.chunks() if isinstance(source, FileSource) else source
            try:
                item["slot"] = slots.upload(body, size, mime)
                continue
            except (transfer.TransferError, OSError) as exc:
                notes.append(f"[{label} was left out: its upload failed ({exc})]")
        else:
            notes.append(f"[{label} was left out: the result would exceed {limit} bytes]")
        dropped.add(id(item))
    for item, source, size in media:
        if "slot" in item or id(item) in dropped:
            continue
        try:
            data = source.read() if isinstance(source, FileSource) else source
        except OSError as exc:
            dropped.add(id(item))
            notes.append(f"[file {item['filename']} was left out: {exc}]")
            continue
        item["bytes"] = len(data)
        item["data"] = base64.b64encode(data).decode()
    # By identity: two images without data yet are equal dicts.
    result["outputs"][:] = [o for o in result["outputs"] if id(o) not in dropped]
    result["outputs"].extend({"type": "text", "source": "sandbox", "text": n} for n in notes)


def fit_result(result: dict, limit: int) -> None:
    """Keep the result under Lambda's response limit (6 MB), saying what was left out: first
    the largest inline files and images, then the Python state, then the longest texts.
    place_media has already moved what it could to upload slots; this is the last guard."""
    def size() -> int:
        return _json_size(result)

    if _upper_size(result) <= limit or size() <= limit:
        return
    outputs = result["outputs"]
    notes = []
    for item in sorted((o for o in outputs if o["type"] in ("file", "image") and "data" in o),
                       key=lambda o: -len(o["data"])):
        outputs.remove(item)
        label = f"file {item['filename']}" if item["type"] == "file" else "an image"
        notes.append(f"[{label} was left out: the result would exceed {limit} bytes]")
        if size() + sum(len(n) + 64 for n in notes) <= limit:
            break
    state = result.get("state")
    if state and any("data" in p for p in state["parts"]) and size() > limit:
        del result["state"]
        notes.append("[the Python state was not kept: the result would exceed the size limit]")
    outputs.extend({"type": "text", "source": "sandbox", "text": n} for n in notes)
    while size() > limit:
        texts = [o for o in outputs if o["type"] in ("text", "error") and len(o.get("text") or o.get("traceback") or "") > 64]
        if not texts:
            break
        longest = max(texts, key=lambda o: len(o.get("text") or o.get("traceback") or ""))
        field = "text" if longest["type"] == "text" else "traceback"
        cut = len(longest[field]) // 2
        result["output_dropped_bytes"] = result.get("output_dropped_bytes", 0) + len(longest[field][cut:].encode())
        longest[field] = longest[field][:cut] + "\n[cut: the result would exceed the size limit]"


def _proc_status(pid: str) -> dict | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def live_pids_of_uid(uid: int, exclude: set[int] = frozenset()) -> list[int]:
    """Processes (not zombies) whose real uid is uid."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        st = _proc_status(entry)
        if st is None or st.get("State", "").startswith(("Z", "X")):
            continue
        if int(st.get("Uid", "-1").split()[0]) == uid:
            found.append(int(entry))
    return found


def _describe_exit(status: int | None) -> str:
    if status is None:
        return "the process ended without a result"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = " (often the memory limit)" if sig == signal.SIGKILL else ""
        return f"the process was killed by {name}{hint}"
    code = os.WEXITSTATUS(status)
    return f"the process exited with status {code} before the block finished (os._exit or a crash)"


class Runner:
    def __init__(self, config: Config):
        self.config = config
        self.layers: dict = {}
        self.tenant: str | None = None
        self.exits: dict[int, int] = {}
        self.cache = transfer.PartCache(config.state_cache_bytes)
        # Standbys waiting for a block, oldest first, and fork requests the zygote has not answered
        # yet (by uid, in order). As root each holds its own uid from the worker's set, so that
        # cleaning up one block's uid never touches them.
        self.standbys: collections.deque[Standby] = collections.deque()
        self.pending: collections.deque[int | None] = collections.deque()
        # Spare uids let a cleaned uid rest a few blocks before it is verified and reused.
        self.uids: list[int] = ([config.slot_uid + k for k in range(UIDS_PER_SLOT)]
                                if config.posture == "root" and config.slot_uid is not None else [])
        self.free_uids: list[int] = list(self.uids)
        self.dirty_uids: set[int] = set()
        self.tmp_mtimes: dict[str, int] = {}
        self.zygote: subprocess.Popen | None = None
        self.ctl: socket.socket | None = None
        self.hello: dict = {}
        self.mpl_dir: str | None = None
        kernel.set_dumpable(False)
        self.layers["nondumpable"] = not kernel.is_dumpable()
        kernel.set_child_subreaper()
        self.layers["subreaper"] = True
        self._make_scratch_root()
        for uid in self.uids:
            # A runner before this one may have died with a block running: its processes are not
            # in this runner's tree, so look at every process of the uid.
            if not self._kill_uid(uid, everywhere=True):
                raise SandboxError(f"processes of slot uid {uid} survive and cannot be killed")
        self.baseline = self._baseline_processes()
        self._start_zygote()
        standby = self._take_standby()
        self._check_required(standby)
        self.standbys.appendleft(standby)
        self._fill_standbys()

    # --- start-up -----------------------------------------------------------------------------

    def _make_scratch_root(self) -> None:
        root = self.config.scratch_root
        os.makedirs(os.path.dirname(root) or "/", exist_ok=True)
        try:
            os.mkdir(root, 0o711)
        except FileExistsError:
            st = os.lstat(root)
            # Someone else's (or a symlinked) directory could redirect our wipes: refuse it.
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                raise SandboxError(f"scratch root {root} exists and is not a directory owned by this runner")
            paths.empty(root)
        os.chmod(root, 0o711)

    def _baseline_processes(self) -> set[tuple[int, str | None]]:
        """Same-uid processes that predate every block (init, extensions): never swept."""
        me = os.getpid()
        return {(pid, _start_time(pid)) for pid in live_pids_of_uid(os.getuid(), {me})}

    def _zygote_config(self) -> dict:
        root = self.config.posture == "root"
        return {
            "scratch_root": self.config.scratch_root,
            "limits": self.config.limits,
            "layers": {"seccomp": True, "no_new_privs": True, "netns": root, "audit_hook": True},
        }

    def _start_zygote(self) -> None:
        self._stop_zygote()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # A fresh matplotlib config dir per zygote: nothing a block wrote can shape the next import.
        self.mpl_dir = tempfile.mkdtemp(prefix="sandbox-mpl-")
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": self.mpl_dir,
            "MPLCONFIGDIR": self.mpl_dir,
            "MPLBACKEND": "Agg",
            # One thread: the zygote must be single-threaded to fork safely, and children inherit it.
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "NUMEXPR_MAX_THREADS": "1", "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1",
            "SANDBOX_ZYGOTE_FD": str(child.fileno()),
            "SANDBOX_ZYGOTE_CONFIG": json.dumps(self._zygote_config()),
        }
        self.layers["clean_env"] = True
        self.zygote = subprocess.Popen([self.config.python, "-I", "-B", ZYGOTE], env=env,
                                       pass_fds=[child.fileno()], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, close_fds=True)
        child.close()
        self.ctl = parent
        msg = self._recv_ctl(ZYGOTE_START_TIMEOUT_S, want="hello")
        self.hello = msg["hello"]
        log.info("zygote %d ready: %s", self.zygote.pid, self.hello)

    def _stop_zygote(self) -> None:
        while self.standbys:
            self._discard(self.standbys.popleft())
        self.pending.clear()
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None
        if self.zygote is not None:
            try:
                self.zygote.kill()
                self.zygote.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self.zygote = None
        if self.mpl_dir:
            shutil.rmtree(self.mpl_dir, ignore_errors=True)
            self.mpl_dir = None
        # Forks that were requested but never reported may still hold their uids.
        for uid in self.uids:
            if uid not in self.free_uids:
                self._kill_uid(uid)
        self.free_uids = list(self.uids)

    def _check_required(self, standby: Standby) -> None:
        self.layers.update(standby.layers)
        self.layers["uid_kill"] = self.config.posture == "root"
        self.layers["posture"] = self.config.posture
        missing = sorted(l for l in self.config.required if not self.layers.get(l))
        if missing:
            self._stop_zygote()
            raise SandboxError(
                "isolation layers required by the configuration are not available on this kernel: "
                + ", ".join(missing) + ". Refusing to start (fail closed). Set SANDBOX_REQUIRE to "
                "the layers you accept, or run where they are granted.")
        log.info("sandbox layers: %s", self.layers)

    def close(self) -> None:
        """Stop the zygote and its standbys, reap everything, remove the scratch root."""
        self._stop_zygote()
        for uid in self.uids:
            self._kill_uid(uid)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.005)
        shutil.rmtree(self.config.scratch_root, ignore_errors=True)

    # --- zygote channel ------------------------------------------------------------------------

    def _recv_ctl(self, timeout: float, want: str) -> dict:
        """Read control messages until one carrying `want`; record child exits on the way."""
        deadline = time.monotonic() + timeout
        assert self.ctl is not None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxError(f"zygote did not answer ({want}) within {timeout:.0f} s")
            ready, _, _ = select.select([self.ctl], [], [], remaining)
            if not ready:
                continue
            try:
                data, ancdata, _flags, _addr = self.ctl.recvmsg(4096, socket.CMSG_SPACE(3 * 4))
            except OSError as exc:
                raise SandboxError(f"zygote channel failed: {exc}") from exc
            if not data:
                raise SandboxError("zygote exited (see its stderr above)")
            msg = json.loads(data)
            fds = array.array("i")
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
            if "exit" in msg:
                self.exits[int(msg["exit"])] = int(msg["status"])
                if len(self.exits) > 256:
                    self.exits.pop(next(iter(self.exits)))
            if "pid" in msg:
                if len(fds) != 3 or not self.pending:
                    for fd in fds:
                        os.close(fd)
                    raise SandboxError("zygote sent a standby that was not asked for, or without its pipes")
                sb = Standby(int(msg["pid"]), self.pending.popleft(), *fds)
                for fd in (sb.job_w, sb.result_r):
                    try:
                        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
                    except OSError:
                        pass  # e.g. over the user's pipe quota: only slower
                self.standbys.append(sb)
            else:
                for fd in fds:
                    os.close(fd)
            if want in msg:
                return msg

    def _zygote_alive(self) -> bool:
        return self.zygote is not None and self.zygote.poll() is None and self.ctl is not None

    def _fill_standbys(self) -> None:
        """Ask the zygote for standbys until the configured number is ready or on its way."""
        while self._zygote_alive() and len(self.standbys) + len(self.pending) < self.config.standbys:
            if self.uids and not self.free_uids:
                return
            uid = None
            if self.uids:
                clean = [u for u in self.free_uids if u not in self.dirty_uids]
                uid = (clean or self.free_uids)[0]
                self.free_uids.remove(uid)
            if uid in self.dirty_uids:
                if not self._kill_uid(uid):
                    log.critical("processes of uid %d survived cleanup; exiting so the environment is discarded", uid)
                    sys.stderr.flush()
                    os._exit(75)
                self.dirty_uids.discard(uid)
            try:
                self.ctl.send(json.dumps({"fork": uid}).encode())
            except OSError:
                if uid is not None:
                    self.free_uids.append(uid)
                return
            self.pending.append(uid)

    def _collect_forks(self, timeout: float) -> None:
        """Turn answered fork requests into standbys (waits up to timeout for the first)."""
        while self.pending:
            if not select.select([self.ctl], [], [], timeout)[0]:
                return
            self._recv_ctl(READY_TIMEOUT_S, want="pid")
            timeout = 0

    def _discard(self, sb: Standby) -> None:
        sb.close()
        try:
            os.kill(sb.pid, signal.SIGKILL)
        except OSError:
            pass
        if sb.uid is not None:
            self._kill_uid(sb.uid)
            self.free_uids.append(sb.uid)
        paths.remove(os.path.join(self.config.scratch_root, str(sb.pid)))

    def _take_standby(self) -> Standby:
        for attempt in range(3):
            try:
                if not self._zygote_alive():
                    self._start_zygote()
                if not self.standbys:
                    self._fill_standbys()
                    self._collect_forks(READY_TIMEOUT_S)
                else:
                    self._collect_forks(0)
                if not self.standbys:
                    raise SandboxError("no standby child was forked")
                sb = self.standbys.popleft()
                try:
                    if not sb.ready:
                        self._await_ready(sb)
                    if sb.uid is None:
                        # A same-uid block could have stopped it; a dead one shows up as EOF/EPIPE.
                        os.kill(sb.pid, signal.SIGCONT)
                except (SandboxError, OSError) as exc:
                    log.warning("standby %d unusable (%s); discarding it", sb.pid, exc)
                    self._discard(sb)
                    continue
                return sb
            except (SandboxError, OSError) as exc:
                log.warning("standby failed (%s); restarting the zygote", exc)
                self._stop_zygote()
                if attempt == 2:
                    raise SandboxError(f"no sandbox child could be started: {exc}") from exc
        raise SandboxError("no sandbox child could be started")

    def _await_ready(self, sb: Standby) -> None:
        reader = FrameReader({frames.READY: JSON_FRAME_CAP})
        deadline = time.monotonic() + READY_TIMEOUT_S
        stderr = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxError("standby child did not become ready")
            ready, _, _ = select.select([sb.result_r, sb.stdio_r], [], [], remaining)
            if sb.stdio_r in ready:
                stderr += os.read(sb.stdio_r, 4096)
            if sb.result_r in ready:
                data = os.read(sb.result_r, 65536)
                if not data:
                    raise SandboxError("standby child died during set-up: " + stderr.decode(errors="replace")[-2000:])
                for _kind, payload in reader.feed(data):
                    sb.layers = json.loads(payload)["layers"]
                    sb.ready = True
                    return

    # --- one block -----------------------------------------------------------------------------

    def bind_tenant(self, tenant: str | None) -> None:
        if not self.config.single_tenant or tenant is None:
            return
        if self.tenant is None:
            self.tenant = tenant
        elif self.tenant != tenant:
            raise TenantMismatch("this sandbox environment already served another tenant")

    def execute(self, event: object, tenant: str | None = None):
        """Run one block. Returns (result, after): call after() before taking the next block."""
        started = time.monotonic()
        payload = contract.validate_payload(event)
        self.bind_tenant(tenant)
        if payload.get("action") == "probe":
            return {"version": 1, "status": "completed", "outputs": [], "layers": self.layers,
                    "zygote": self.hello, "duration_ms": 0}, (lambda: None)
        limits = dict(self.config.limits)
        for key, value in (payload.get("limits") or {}).items():
            if key in limits and 0 < value < limits[key]:
                limits[key] = value
        files = payload.get("files") or []
        want_state = bool(payload.get("want_state"))
        slots = transfer.Slots(payload.get("uploads") or [])
        sb = self._take_standby()
        waited = time.monotonic() - started
        try:
            placed = self._place_inputs(sb, files)
        except InputFileError as exc:
            # The code does not run; the standby never saw a job and takes the next block.
            self._return_standby(sb)
            total_ms = round((time.monotonic() - started) * 1000, 3)
            return {"version": 1, "status": "failed",
                    "outputs": [{"type": "error", "name": "InputFileError", "message": str(exc), "traceback": ""}],
                    "duration_ms": 0,
                    "timings": {"wait_ms": round(waited * 1000, 3), "run_ms": 0, "total_ms": total_ms}}, (lambda: None)
        except BaseException:
            self._discard(sb)
            raise
        outputs = Outputs(limits)
        block = Block()
        parts = self._restore_state(payload.get("state"), limits, outputs)
        block.allowed = {p["sha256"]: p["bytes"] for p in payload["state"]["parts"]} if parts else {}
        job = {"code": payload["code"], "limits": limits, "want_state": want_state,
               "inputs": [f["name"] for f in files],
               "state": [{"sha256": p["sha256"], "bytes": p["bytes"]} for p in payload["state"]["parts"]] if parts else None,
               # How many new large parts the child may leave out of band (the rest stay in band).
               "state_slots": slots.free()}
        run_started = time.monotonic()
        deadline = run_started + limits["timeout_ms"] / 1000
        try:
            self._send_job(sb, json.dumps(job).encode(), parts, deadline)
            del parts
            self._collect(sb, limits, outputs, block, deadline, want_state)
        except BrokenPipeError:
            outputs.error("SandboxError", "the sandbox child ended before it received the code", "")
        except SandboxError as exc:
            outputs.error("SandboxError", str(exc), "")
        run_ms = (time.monotonic() - run_started) * 1000
        killed = not block.done
        if killed:
            # Timed out, crashed, or broke the protocol: stop everything before answering.
            self._kill_block(sb)
            if block.ended:
                outputs.error("ProcessExit", _describe_exit(self._exit_status(sb.pid)), "")
        try:
            self._collect_files(sb, outputs, placed)
            result = {
                "version": 1,
                "status": block.status,
                "outputs": outputs.finish(block.child_dropped),
                "output_dropped_bytes": outputs.dropped,
                "duration_ms": round(run_ms, 3),
            }
            if block.done and block.manifest is not None:
                place_state(block, self.config.max_result_bytes, result, slots, self.cache)
            block.parts = []
            place_media(result, outputs, self.config.max_result_bytes, slots)
        finally:
            outputs.close()
        result["timings"] = {"wait_ms": round(waited * 1000, 3), "run_ms": round(run_ms, 3),
                             "total_ms": round((time.monotonic() - started) * 1000, 3)}
        fit_result(result, self.config.max_result_bytes)

        def after() -> None:
            # The replacement forks in the zygote while this process cleans up.
            self._fill_standbys()
            if not killed:
                self._kill_block(sb)
            sb.close()
            if sb.uid is not None:
                self.free_uids.append(sb.uid)
            self._wipe(sb.pid, sb.uid)
            try:
                self._fill_standbys()
                self._collect_forks(0)
            except SandboxError as exc:
                # e.g. the block killed the zygote (same uid): start afresh at the next block.
                log.warning("zygote lost (%s); it restarts with the next block", exc)
                self._stop_zygote()

        return result, after

    # --- inputs: files and state ----------------------------------------------------------------

    def _return_standby(self, sb: Standby) -> None:
        paths.empty(os.path.join(self.config.scratch_root, str(sb.pid)))
        self.standbys.appendleft(sb)

    def _place_inputs(self, sb: Standby, files: list[dict]) -> dict[str, tuple]:
        """Write the input files into the standby's (emptied) working directory. Returns, by
        name, what identifies each as placed (dev, inode, size, mtime): unchanged ones are not
        outputs."""
        if not files:
            return {}
        names: set[str] = set()
        total = 0
        for f in files:
            name = f["name"]
            if name in names:
                raise InputFileError(f"input file name {name!r} appears more than once")
            names.add(name)
            total += f["bytes"]
        if total > self.config.max_input_bytes:
            raise InputFileError(f"the input files total {total} bytes, over the "
                                 f"{self.config.max_input_bytes}-byte limit")
        scratch = os.path.join(self.config.scratch_root, str(sb.pid))
        paths.empty(scratch)
        try:
            dfd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise SandboxError(f"the standby's working directory is unusable: {exc}") from exc
        # Set in the past: a write by the block moves mtime on even within one clock tick.
        mtime = time.time_ns() - 2_000_000_000
        placed = {}
        try:
            for f in files:
                placed[f["name"]] = self._place_file(dfd, f, sb.uid, mtime)
        except InputFileError:
            paths.empty(scratch)
            raise
        finally:
            os.close(dfd)
        return placed

    @staticmethod
    def _place_file(dfd: int, f: dict, uid: int | None, mtime: int) -> tuple:
        name, size = f["name"], f["bytes"]
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        except OSError as exc:
            raise InputFileError(f"input file {name!r} could not be created: {exc.strerror}") from None
        try:
            if "data" in f:
                try:
                    data = base64.b64decode(f["data"], validate=True)
                except ValueError:
                    raise InputFileError(f"input file {name!r}: its data is not valid base64") from None
                if len(data) != size:
                    raise InputFileError(f"input file {name!r} has {len(data)} bytes, not the {size} announced")
                frames.write_all(fd, data)
            elif "url" in f:
                try:
                    transfer.get(f["url"], size, lambda chunk: frames.write_all(fd, chunk))
                except transfer.TransferError as exc:
                    raise InputFileError(f"input file {name!r} could not be fetched: {exc}") from None
            elif size:
                raise InputFileError(f"input file {name!r} has neither data nor url")
            if f.get("writable"):
                if uid is not None:
                    os.fchown(fd, uid, uid)
                os.fchmod(fd, 0o644)
            else:
                # Root posture: root's file in a sticky directory, so the block can neither write,
                # chmod, rename nor delete it. Deployed posture (one uid for runner and block):
                # 0444 is advisory only, the block could chmod it. Either way this is a copy; the
                # stored original is never changed.
                os.fchmod(fd, 0o444)
            os.utime(fd, ns=(mtime, mtime))
            st = os.fstat(fd)
            return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError as exc:
            raise InputFileError(f"input file {name!r} could not be written: {exc.strerror or exc}") from None
        finally:
            os.close(fd)

    def _restore_state(self, state: dict | None, limits: dict, outputs: Outputs) -> list:
        """The input state's parts, from the cache, inline data or their URL, each checked
        against its SHA-256. On any failure: a notice, and the block runs without state."""
        if not state:
            return []
        specs = state["parts"]
        parts = []
        try:
            total = sum(p["bytes"] for p in specs)
            if total > limits["max_state_bytes"]:
                raise ValueError(f"its {total} bytes exceed the {limits['max_state_bytes']}-byte limit")
            for i, spec in enumerate(specs):
                data = self.cache.get(spec["sha256"])
                if data is None:
                    if "data" in spec:
                        try:
                            data = base64.b64decode(spec["data"], validate=True)
                        except ValueError:
                            raise ValueError(f"part {i}: its data is not valid base64") from None
                    elif "url" in spec:
                        try:
                            data = transfer.get_bytes(spec["url"], spec["bytes"])
                        except transfer.TransferError as exc:
                            raise ValueError(f"part {i} could not be fetched: {exc}") from None
                    else:
                        raise ValueError(f"part {i} came without data or url and is not kept here")
                    if hashlib.sha256(data).hexdigest() != spec["sha256"]:
                        raise ValueError(f"part {i} does not match its SHA-256")
                    self.cache.put(spec["sha256"], data)
                if len(data) != spec["bytes"]:
                    raise ValueError(f"part {i} has {len(data)} bytes, not {spec['bytes']}")
                parts.append(data)
        except ValueError as exc:
            outputs.notice(f"[the saved Python state could not be restored: {exc}]")
            return []
        return parts

    def _send_job(self, sb: Standby, job: bytes, parts: list, deadline: float) -> None:
        """The job as JSON, then each state part raw and length-prefixed (no base64, no copy),
        within the block's time: a child that stops reading cannot hold the runner."""
        chunks = [struct.pack(">I", len(job)) + job]
        for part in parts:
            chunks += [struct.pack(">I", len(part)), part]
        os.set_blocking(sb.job_w, False)
        for chunk in chunks:
            view = memoryview(chunk).cast("B")
            while view:
                try:
                    view = view[os.write(sb.job_w, view):]
                    continue
                except BlockingIOError:
                    pass
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SandboxError("the sandbox child did not take its job within the time limit")
                select.select([], [sb.job_w], [], remaining)
        os.close(sb.job_w)
        sb.job_w = -1

    def _collect(self, sb: Standby, limits: dict, outputs: Outputs, block: "Block", deadline: float,
                 want_state: bool) -> None:
        caps = {frames.STDOUT: limits["max_output_bytes"] + 4096, frames.STDERR: limits["max_output_bytes"] + 4096,
                frames.RESULT: limits["max_output_bytes"] + 4096, frames.NOTICE: 64 << 10,
                frames.IMAGE: limits["max_files_bytes"] + 4096, frames.ERROR: JSON_FRAME_CAP,
                frames.DONE: JSON_FRAME_CAP, frames.TRUNCATED: 32}
        if want_state:
            caps[frames.STATE] = JSON_FRAME_CAP
            caps[frames.PART] = limits["max_state_bytes"]
        reader = FrameReader(caps)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        open_fds = [sb.result_r, sb.stdio_r]
        while sb.result_r in open_fds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                outputs.error("TimeoutError", f"the code block exceeded the {limits['timeout_ms'] / 1000:g} s "
                              "time limit and was stopped", "")
                block.status = "timed_out"
                return
            ready, _, _ = select.select(open_fds, [], [], remaining)
            for fd in ready:
                if fd == sb.stdio_r:
                    data = os.read(fd, 1 << 16)
                    if not data:
                        open_fds.remove(fd)
                    else:
                        outputs.text("stdout", decoder.decode(data))
                    continue
                got = reader.read_from(fd)
                if got is None:
                    block.ended = True
                    return
                for kind, payload in got:
                    if kind == frames.DONE:
                        done = json.loads(payload)
                        if not isinstance(done, dict) or done.get("status") not in ("completed", "failed"):
                            raise SandboxError("protocol violation: bad done frame")
                        if block.manifest is not None and len(block.parts) != len(block.expected):
                            raise SandboxError("protocol violation: state parts missing")
                        block.done = True
                        block.status = done["status"]
                        dropped = done.get("dropped", 0)
                        if isinstance(dropped, int) and 0 <= dropped < 1 << 50:
                            block.child_dropped = max(block.child_dropped, dropped)
                        self._drain_stdio(sb, outputs, decoder)
                        return
                    if kind == frames.STATE:
                        self._state_manifest(payload, block, limits)
                    elif kind == frames.PART:
                        if block.manifest is None or len(block.parts) >= len(block.expected) \
                                or len(payload) != block.expected[len(block.parts)]:
                            raise SandboxError("protocol violation: unexpected state part")
                        block.parts.append(payload)
                    else:
                        self._apply_frame(kind, payload, outputs)
                    if kind == frames.TRUNCATED and payload.isdigit():
                        block.child_dropped = max(block.child_dropped, min(int(payload), 1 << 50))
        block.ended = True

    @staticmethod
    def _state_manifest(payload: bytes, block: "Block", limits: dict) -> None:
        """The child's list of state parts: a ref only to a part it was given, within the limit."""
        bad = SandboxError("protocol violation: bad state frame")
        if block.manifest is not None:
            raise bad
        try:
            parts = json.loads(payload)["parts"]
        except (ValueError, KeyError, TypeError):
            raise bad from None
        if not isinstance(parts, list) or not 1 <= len(parts) <= frames.MAX_STATE_PARTS:
            raise bad
        total = 0
        for e in parts:
            if not isinstance(e, dict) or set(e) != {"sha256", "bytes", "ref"} or type(e["bytes"]) is not int \
                    or type(e["ref"]) is not bool or not isinstance(e["sha256"], str) or len(e["sha256"]) != 64 \
                    or not set(e["sha256"]) <= _SHA256_HEX or e["bytes"] < 0:
                raise bad
            if e["ref"] and block.allowed.get(e["sha256"]) != e["bytes"]:
                raise SandboxError("protocol violation: the state refers to a part the block was not given")
            total += e["bytes"]
        if total > limits["max_state_bytes"]:
            raise SandboxError("protocol violation: state over its limit")
        block.manifest = parts
        block.expected = [e["bytes"] for e in parts if not e["ref"]]

    def _drain_stdio(self, sb: Standby, outputs: Outputs, decoder) -> None:
        while select.select([sb.stdio_r], [], [], 0)[0]:
            data = os.read(sb.stdio_r, 1 << 16)
            if not data:
                break
            outputs.text("stdout", decoder.decode(data))

    def _apply_frame(self, kind: bytes, payload: bytes, outputs: Outputs) -> None:
        if kind == frames.STDOUT:
            outputs.text("stdout", payload.decode("utf-8", "replace"))
        elif kind == frames.STDERR:
            outputs.text("stderr", payload.decode("utf-8", "replace"))
        elif kind == frames.RESULT:
            outputs.text("result", payload.decode("utf-8", "replace") + "\n")
        elif kind == frames.TRUNCATED:
            outputs.truncated()
        elif kind == frames.NOTICE:
            outputs.notice(payload.decode("utf-8", "replace"))
        elif kind == frames.IMAGE:
            if not payload.startswith(b"\x89PNG\r\n\x1a\n"):
                raise SandboxError("protocol violation: image frame is not a PNG")
            outputs.media({"type": "image", "mime_type": "image/png", "bytes": len(payload)},
                          len(payload), "an image", payload)
        elif kind == frames.ERROR:
            err = json.loads(payload)
            if not isinstance(err, dict) or not all(isinstance(err.get(k), str) for k in ("name", "message", "traceback")):
                raise SandboxError("protocol violation: bad error frame")
            outputs.error(err["name"][:200], err["message"][:10000], err["traceback"][-20000:])

    def _exit_status(self, pid: int) -> int | None:
        deadline = time.monotonic() + 0.5
        while pid not in self.exits and time.monotonic() < deadline:
            try:
                self._recv_ctl(max(0.01, deadline - time.monotonic()), want="exit")
            except SandboxError:
                break
        return self.exits.pop(pid, None)

    # --- cleanup -------------------------------------------------------------------------------

    def _reap_orphans(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.zygote is not None and pid == self.zygote.pid:
                self.zygote.returncode = -1

    def _kill_block(self, sb: Standby) -> None:
        """Kill every process the block started (daemons and hoppers included) and verify."""
        if sb.uid is not None:
            # Verified before the uid holds a standby again (_fill_standbys), off the reply path.
            self._signal_uid(sb.uid)
            self.dirty_uids.add(sb.uid)
            ok = True
        else:
            ok = self._sweep_same_uid(sb.pid)
        self._reap_orphans()
        if not ok:
            # Fail closed: an environment we cannot clean must not take another block.
            log.critical("processes of a block survived cleanup; exiting so the environment is discarded")
            sys.stderr.flush()
            os._exit(75)

    def _signal_uid(self, uid: int) -> None:
        """One kill(-1, SIGKILL) as the uid: every process of the uid at once, and none can fork
        past it (a pending SIGKILL makes fork fail); they finish dying in the background.

        The runner (root) takes the uid as its real and effective uid for the one call, keeping
        0 as its saved uid to come back: with real uid 0 kill(-1) would reach root's processes."""
        os.setresuid(uid, uid, 0)
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.setresuid(0, 0, 0)

    def _kill_uid(self, uid: int, everywhere: bool = False) -> bool:
        """Kill every process of the uid and verify that none is left alive. As the subreaper
        the runner inherits every orphan, so the uid's processes are all in its subtree: a walk
        of that tree (a few processes) verifies, instead of a scan of all of /proc."""
        for attempt in range(200):
            self._reap_orphans()
            alive = live_pids_of_uid(uid) if everywhere else [p for p, u in self._descendants().items() if u == uid]
            if not alive:
                return True
            self._signal_uid(uid)
            if attempt:
                time.sleep(0.001)
        return False

    def _protected(self) -> set[int]:
        keep = {os.getpid()}
        if self.zygote is not None and self.zygote.poll() is None:
            keep.add(self.zygote.pid)
        for pid, start in self.baseline:
            if _start_time(pid) == start:
                keep.add(pid)
        return keep

    def _descendants(self) -> dict[int, int]:
        """Every live process below the runner, with its uid. As a subreaper it inherits every
        orphan of a block, so a daemon's double fork cannot leave this tree while the runner lives."""
        found: set[int] = set()
        todo = [os.getpid()]
        while todo:
            pid = todo.pop()
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/children") as f:
                        kids = [int(k) for k in f.read().split()]
                except OSError:
                    continue
                for kid in kids:
                    if kid not in found:
                        found.add(kid)
                        todo.append(kid)
        alive: dict[int, int] = {}
        for pid in found:
            st = _proc_status(str(pid))
            if st is not None and not st.get("State", "").startswith(("Z", "X")):
                alive[pid] = int(st.get("Uid", "-1").split()[0])
        return alive

    def _zygote_children(self) -> set[int]:
        if self.zygote is None:
            return set()
        kids: set[int] = set()
        try:
            for tid in os.listdir(f"/proc/{self.zygote.pid}/task"):
                with open(f"/proc/{self.zygote.pid}/task/{tid}/children") as f:
                    kids.update(int(k) for k in f.read().split())
        except OSError:
            pass
        return kids

    def _sweep_candidates(self, protected: set[int], block_pid: int) -> set[int]:
        victims = set(self._descendants()) - protected
        if self.config.uid_exclusive:
            # Inside Lambda this runner is the uid's only tenant: anything unknown of the uid goes.
            victims |= set(live_pids_of_uid(os.getuid(), protected))
        # Standbys are the zygote's children, and only the zygote forks those; read them after
        # the scan so a standby forked meanwhile is never taken for a survivor.
        return victims - (self._zygote_children() - {block_pid})

    def _sweep_same_uid(self, child_pid: int) -> bool:
        """Deployed posture: no other uid exists, so stop-then-kill until a sweep finds none."""
        protected = self._protected()
        try:
            os.kill(child_pid, signal.SIGKILL)
        except OSError:
            pass
        for _ in range(self.config.limits["max_processes"] + 10):
            victims = self._sweep_candidates(protected, child_pid)
            if not victims:
                return True
            # Stop first so nothing can fork between our look and our kill.
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGSTOP)
                except OSError:
                    pass
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self._reap_orphans()
            time.sleep(0.0005)
        return not self._sweep_candidates(protected, child_pid)

    def _wipe(self, child_pid: int, uid: int | None) -> None:
        # Whatever else a block put in the scratch root (one uid for all, deployed) goes too.
        # Standbys being forked are the zygote's children too; the finished block's child may still be.
        waiting = {str(sb.pid) for sb in self.standbys} | {str(p) for p in self._zygote_children() - {child_pid}}
        paths.empty(self.config.scratch_root, keep=waiting)
        # Anything else the block left where the next block (or a restarted zygote) would look.
        keep = {self.config.scratch_root, self.mpl_dir}
        standby_uids = {sb.uid for sb in self.standbys} | set(self.pending)
        for base in ("/tmp", "/var/tmp", "/dev/shm"):
            try:
                # Unchanged since the last look: nothing was added at its top level. File times
                # are coarse (a clock tick), so a directory changed within the last second is
                # always looked at again.
                mtime = os.stat(base).st_mtime_ns
                if self.tmp_mtimes.get(base) == mtime and time.time_ns() - mtime > 1_000_000_000:
                    continue
                entries = os.listdir(base)
            except OSError:
                continue
            for entry in entries:
                full = os.path.join(base, entry)
                if full in keep:
                    continue
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                ours = (uid is not None and st.st_uid == uid) or \
                       (self.config.wipe_tmp and uid is None and st.st_uid == os.getuid())
                if st.st_uid in standby_uids and st.st_uid != uid:
                    ours = False
                if ours:
                    paths.remove(full)
            try:
                self.tmp_mtimes[base] = os.stat(base).st_mtime_ns
            except OSError:
                pass

    def _collect_files(self, sb: Standby, outputs: Outputs, placed: dict[str, tuple]) -> None:
        """Files the block wrote in its working directory, walked through directory descriptors
        without following any link (a survivor of the block may still swap entries). Inputs
        still as placed are not outputs."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            top = os.open(os.path.join(self.config.scratch_root, str(sb.pid)), flags | os.O_DIRECTORY)
        except OSError:
            return
        examined = 0
        unexamined = 0

        def walk(dfd: int, rel: str, depth: int) -> None:
            nonlocal examined, unexamined
            try:
                entries = sorted(os.scandir(dfd), key=lambda e: e.name)
            except OSError:
                return
            for entry in entries:
                if entry.name.startswith(".") or entry.name == "__pycache__":
                    continue
                name = f"{rel}{entry.name}"
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                    is_file = entry.is_file(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir and depth < 3:
                    try:
                        sub = os.open(entry.name, flags | os.O_DIRECTORY, dir_fd=dfd)
                    except OSError:
                        continue
                    try:
                        walk(sub, name + "/", depth + 1)
                    finally:
                        os.close(sub)
                elif is_file:
                    if examined >= 200:
                        unexamined += 1
                        continue
                    examined += 1
                    self._collect_file(dfd, entry.name, name, sb.uid, outputs, placed if depth == 0 else {})

        try:
            walk(top, "", 0)
        finally:
            os.close(top)
        if unexamined:
            outputs.notice(f"[{unexamined} more files were not examined]")

    @staticmethod
    def _collect_file(dfd: int, entry: str, name: str, uid: int | None, outputs: Outputs,
                      placed: dict[str, tuple]) -> None:
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
        except OSError:
            return
        source = None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return
            if placed.get(entry) == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns):
                return
            # Root posture: the block can only make files of its own uid; another owner's file
            # here is a hard link to something the runner (root) must not hand out.
            if uid is not None and st.st_uid != uid:
                return
            size = st.st_size
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            if size > outputs.media_budget or outputs.media_count <= 0:
                outputs.notice(f"[file {name} ({size} bytes) was not returned: over the per-block "
                               f"limit of {outputs.media_count_limit} files / {outputs.media_bytes_limit} bytes]")
                return
            if size <= 1 << 20:
                data = bytearray()
                while len(data) < size:
                    chunk = os.pread(fd, size - len(data), len(data))
                    if not chunk:
                        break
                    data += chunk
                source, size = bytes(data), len(data)
            else:
                source = FileSource(fd, size)  # read or streamed when placed
            outputs.media({"type": "file", "filename": name, "mime_type": mime, "bytes": size},
                          size, f"file {name}", source)
        finally:
            if not isinstance(source, FileSource):
                os.close(fd)


# --- Lambda entry point ---------------------------------------------------------------------------

_runner: Runner | None = None


def get_runner() -> Runner:
    global _runner
    if _runner is None:
        _runner = Runner(Config.from_env())
    return _runner


def handler(event, context):
    """AWS Lambda handler: one event = one code block."""
    runner = get_runner()
    result, after = runner.execute(event, getattr(context, "tenant_id", None))
    # Inside Lambda nothing may run after we return (the environment can freeze, and a survivor
    # could take the next event from the Runtime API), so clean up first.
    after()
    return result


if os.environ.get("AWS_LAMBDA_RUNTIME_API"):
    logging.basicConfig(level=logging.INFO)
    get_runner()
