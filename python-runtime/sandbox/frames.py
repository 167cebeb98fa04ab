"""The runner <-> child protocol over pipes.

runner -> child (job pipe): one 4-byte-length-prefixed JSON job, then, for each part of the
input state, one 4-byte-length-prefixed raw message (no base64), in order.

child -> runner (result pipe): frames of 1 type byte, 4-byte length, payload. The child is
untrusted: the runner reads frames with a hard cap per type, rejects unknown types, and accepts
STATE/PART only when it asked for the state (see collect.FrameReader and collect.collect).
"""
from __future__ import annotations

import json
import os
import struct
import threading

HEADER = struct.Struct(">cI")

READY = b"y"      # standby is set up: JSON {layers}
STDOUT = b"o"     # text (unused since fd 1 is a pipe of its own; still accepted)
STDERR = b"e"     # text (likewise, fd 2)
RESULT = b"r"     # text repr of the final expression (plain text; DISPLAY carries bundles)
DISPLAY = b"m"    # JSON {text, mime?}: a result or display() as a MIME bundle (text/plain + RICH)
IMAGE = b"i"      # PNG bytes
ERROR = b"x"      # JSON {name, message, traceback}
NOTICE = b"n"     # text from the sandbox itself (limits, dropped state)
STATE = b"s"      # JSON {parts: [{sha256, bytes, ref}]}: the namespace's parts, main pickle first
PART = b"p"       # raw bytes of the next part of STATE that is not a ref, in order
DONE = b"d"       # JSON {status, dropped}
TRUNCATED = b"t"  # text output was cut here; payload: bytes dropped so far (decimal)

MAX_STATE_PARTS = 256  # the contract's MAX_STATE_PARTS: main pickle and out-of-band buffers


# A block's threads may still print while the main thread sends its last frames.
_write_lock = threading.Lock()


def _fresh_lock() -> None:
    global _write_lock
    _write_lock = threading.Lock()


# A block that forks while one of its threads writes must not inherit a held lock.
os.register_at_fork(after_in_child=_fresh_lock)


def write_all(fd: int, data) -> None:
    """Write every byte of a bytes-like object (os.write may take only part of it)."""
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_frame(fd: int, kind: bytes, payload) -> None:
    """payload: any bytes-like object; a large one is written without a copy."""
    size = memoryview(payload).nbytes
    with _write_lock:
        if size <= 1 << 16:
            write_all(fd, HEADER.pack(kind, size) + bytes(payload))
        else:
            write_all(fd, HEADER.pack(kind, size))
            write_all(fd, payload)


def write_json(fd: int, kind: bytes, obj: object) -> None:
    write_frame(fd, kind, json.dumps(obj, separators=(",", ":")).encode())


def read_into(fd: int, buf) -> None:
    """Fill a writable buffer from fd (no intermediate copies)."""
    view = memoryview(buf).cast("B")
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if not n:
            raise EOFError("pipe closed")
        got += n


def read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int, limit: int) -> bytes:
    """Read one 4-byte-length-prefixed message (the job), refusing anything over limit."""
    (size,) = struct.unpack(">I", read_exact(fd, 4))
    if size > limit:
        raise ValueError(f"message of {size} bytes exceeds {limit}")
    return read_exact(fd, size)


def write_message(fd: int, data: bytes) -> None:
    write_all(fd, struct.pack(">I", len(data)) + data)
