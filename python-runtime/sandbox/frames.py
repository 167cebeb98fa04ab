"""Length-prefixed frames between the child and the runner: 1 type byte, 4-byte length, payload.

The child is untrusted: the runner reads frames with a hard cap per frame and per block and
rejects unknown types (see runner.FrameReader).
"""
from __future__ import annotations

import json
import os
import struct

HEADER = struct.Struct(">cI")

READY = b"y"      # standby is set up: JSON {layers}
STDOUT = b"o"     # text
STDERR = b"e"     # text
RESULT = b"r"     # text repr of the final expression
IMAGE = b"i"      # PNG bytes
ERROR = b"x"      # JSON {name, message, traceback}
NOTICE = b"n"     # text from the sandbox itself (limits, dropped state)
STATE = b"s"      # serialized namespace
DONE = b"d"       # JSON {status, dropped}
TRUNCATED = b"t"  # text output was cut here; payload: bytes dropped so far (decimal)


def write_frame(fd: int, kind: bytes, payload: bytes) -> None:
    data = HEADER.pack(kind, len(payload)) + payload
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_json(fd: int, kind: bytes, obj: object) -> None:
    write_frame(fd, kind, json.dumps(obj, separators=(",", ":")).encode())


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
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
