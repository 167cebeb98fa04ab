"""Reading a running block: the child's frames on its result pipe and what it writes to its fd 1
and fd 2 (two pipes), until its done frame, the end of its pipe, or the block's deadline. Anything
the child sends is untrusted: each frame type is capped, and a frame that breaks the protocol fails
the block (SandboxError).

Order: when several pipes are ready, the result pipe is read first, then fd 1, then fd 2; the child
writes to one only after the runner has read the pipes after it in that order (stdio.py), so the
items come out in the order the block wrote them."""
from __future__ import annotations

import codecs
import json
import os
import select
import time
from typing import TYPE_CHECKING

from . import frames
from .errors import SandboxError
from .outputs import Outputs

if TYPE_CHECKING:
    from .standbys import Standby

# Caps on what an untrusted child may send per frame, by type (bytes).
JSON_FRAME_CAP = 256 << 10
_SHA256_HEX = frozenset("0123456789abcdef")


class FrameReader:
    """Incremental, bounded parser of the child's frames.

    caps: the frame types accepted, each with its largest body in bytes; another type or a larger
    body raises SandboxError. Small frames are parsed out of 64 KiB reads; a large frame's body is
    read straight into a buffer of its announced size (after the cap check), so tens of MB cost
    no repeated copying."""

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
        """Parse data read from the pipe; the complete frames as (type, body)."""
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


def collect(sb: Standby, limits: dict, outputs: Outputs, block: Block, deadline: float,
            want_state: bool) -> None:
    """Read the block's pipes into outputs and block until its done frame, the end of its result
    pipe (block.ended) or deadline (time.monotonic() seconds: block.status "timed_out", with an
    error item). STATE and PART frames are accepted only if want_state. Raises SandboxError on a
    protocol violation."""
    caps = {frames.STDOUT: limits["max_output_bytes"] + 4096, frames.STDERR: limits["max_output_bytes"] + 4096,
            frames.RESULT: limits["max_output_bytes"] + 4096, frames.NOTICE: 64 << 10,
            # JSON of text and MIME data within the output limit: escaping may grow it sixfold.
            frames.DISPLAY: 6 * limits["max_output_bytes"] + 4096,
            frames.IMAGE: limits["max_files_bytes"] + 4096, frames.ERROR: JSON_FRAME_CAP,
            frames.DONE: JSON_FRAME_CAP, frames.TRUNCATED: 32}
    if want_state:
        caps[frames.STATE] = JSON_FRAME_CAP
        caps[frames.PART] = limits["max_state_bytes"]
    reader = FrameReader(caps)
    streams = {sb.stdout_r: ("stdout", codecs.getincrementaldecoder("utf-8")("replace")),
               sb.stderr_r: ("stderr", codecs.getincrementaldecoder("utf-8")("replace"))}
    # In this order of priority (see the module's docstring).
    open_fds = [sb.result_r, sb.stdout_r, sb.stderr_r]
    while sb.result_r in open_fds:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _drain_stdio(streams, outputs)
            outputs.error("TimeoutError", f"the code block exceeded the {limits['timeout_ms'] / 1000:g} s "
                          "time limit and was stopped", "")
            block.status = "timed_out"
            return
        ready, _, _ = select.select(open_fds, [], [], remaining)
        for fd in [f for f in open_fds if f in ready]:
            if fd in streams:
                data = os.read(fd, 1 << 16)
                if not data:
                    open_fds.remove(fd)
                else:
                    source, decoder = streams[fd]
                    outputs.text(source, decoder.decode(data))
                continue
            got = reader.read_from(fd)
            if got is None:
                block.ended = True
                _drain_stdio(streams, outputs)
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
                    _drain_stdio(streams, outputs)
                    return
                if kind == frames.STATE:
                    _state_manifest(payload, block, limits)
                elif kind == frames.PART:
                    if block.manifest is None or len(block.parts) >= len(block.expected) \
                            or len(payload) != block.expected[len(block.parts)]:
                        raise SandboxError("protocol violation: unexpected state part")
                    block.parts.append(payload)
                else:
                    _apply_frame(kind, payload, outputs)
                if kind == frames.TRUNCATED and payload.isdigit():
                    block.child_dropped = max(block.child_dropped, min(int(payload), 1 << 50))
    block.ended = True


def _state_manifest(payload: bytes, block: Block, limits: dict) -> None:
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


def _drain_stdio(streams: dict, outputs: Outputs) -> None:
    """What fd 1 and fd 2 hold now, stdout first (the child settled stderr before writing it)."""
    for fd, (source, decoder) in streams.items():
        # Bounded: a process of the block may still be writing (a timed-out block, a daemon).
        for _ in range(256):
            if not select.select([fd], [], [], 0)[0]:
                break
            data = os.read(fd, 1 << 16)
            if not data:
                break
            outputs.text(source, decoder.decode(data))
        outputs.text(source, decoder.decode(b"", final=True))


_MIME_TYPES = ("text/html", "text/markdown", "text/latex", "image/svg+xml", "application/json")


def _display(payload: bytes) -> tuple[str, dict | None]:
    """A display frame: (text/plain, the richer forms or None). Only the MIME types the contract
    names, strings but application/json."""
    bad = SandboxError("protocol violation: bad display frame")
    try:
        body = json.loads(payload)
    except ValueError:
        raise bad from None
    if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not set(body) <= {"text", "mime"}:
        raise bad
    mime = body.get("mime")
    if mime is None:
        return body["text"], None
    if not isinstance(mime, dict) or not set(mime) <= set(_MIME_TYPES) \
            or not all(isinstance(v, str) for k, v in mime.items() if k != "application/json"):
        raise bad
    return body["text"], mime or None


def _apply_frame(kind: bytes, payload: bytes, outputs: Outputs) -> None:
    if kind == frames.STDOUT:
        outputs.text("stdout", payload.decode("utf-8", "replace"))
    elif kind == frames.STDERR:
        outputs.text("stderr", payload.decode("utf-8", "replace"))
    elif kind == frames.RESULT:
        outputs.display(payload.decode("utf-8", "replace"), None)
    elif kind == frames.DISPLAY:
        outputs.display(*_display(payload))
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
