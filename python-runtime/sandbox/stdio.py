"""The block's standard streams: fd 1 and fd 2 are two pipes the runner reads, and sys.stdout and
sys.stderr are real text files on them (encoding utf-8, a `buffer`, a real `fileno()`). So what
Python prints, what `os.write(1, ...)` writes, what a C extension or a program the block starts
writes, all land on the stream they were written to, in the order they were written.

Three channels reach the runner: the result pipe (frames: results, displays, images, errors), fd 1
and fd 2. The runner reads whatever is ready in that order of priority (collect.collect). So that
the order across channels is the order of the writes, a writer on a channel first waits until the
runner has read every channel of lower priority (FIONREAD of that pipe is 0): a frame waits for
fd 1 and fd 2, a Python-level write to stdout waits for fd 2. Only writes to fd 1 that bypass
Python (C code, another process) right after a write to fd 2 can still be seen out of
order. os.write from Python counts as Python-level (install wraps it). The wait is bounded
(SETTLE_CAP_S): a runner that stops reading never holds the block.
"""
from __future__ import annotations

import fcntl
import io
import os
import select
import struct
import sys
import termios
import time

STDOUT, STDERR = 1, 2
SETTLE_CAP_S = 2.0
_FIONREAD = termios.FIONREAD
_ZERO = b"\0\0\0\0"


def pending(fd: int) -> int:
    """Bytes written to the pipe fd and not yet read (0 for anything that is not a pipe)."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, _FIONREAD, _ZERO))[0]
    except OSError:
        return 0


def settle(fds: tuple[int, ...]) -> None:
    """Wait, at most SETTLE_CAP_S, until the runner has read what the pipes fds hold."""
    if not any(pending(fd) for fd in fds):
        return
    deadline = time.monotonic() + SETTLE_CAP_S
    delay = 0.00002
    while time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.002)
        if not any(pending(fd) for fd in fds):
            return


class _Pipe(io.FileIO):
    """The raw binary layer (sys.stdout.buffer): every write reaches the fd at once, whole."""

    def __init__(self, fd: int, name: str, lower: tuple[int, ...]):
        super().__init__(fd, "wb", closefd=False)
        self.name = name
        self._lower = lower

    def write(self, data) -> int:
        if self._lower:
            settle(self._lower)
        view = memoryview(data).cast("B")
        total = len(view)
        while view:
            n = super().write(view)
            if n is None:  # the block made the fd non-blocking and the pipe is full
                select.select([], [self.fileno()], [], 1.0)
                continue
            view = view[n:]
        return total


def _ordered(write):
    def ordered_write(fd, data):
        if fd == STDOUT:
            settle((STDERR,))
        return write(fd, data)

    ordered_write.__doc__ = write.__doc__
    return ordered_write


def install() -> None:
    """sys.stdout/sys.stderr (and sys.__stdout__/__stderr__) as unbuffered utf-8 text files on fd 1
    and fd 2, as `python -u` makes them; os.write to fd 1 ordered like them."""
    os.write = _ordered(os.write)
    out = io.TextIOWrapper(_Pipe(STDOUT, "<stdout>", (STDERR,)), encoding="utf-8", errors="replace",
                           newline="\n", write_through=True)
    err = io.TextIOWrapper(_Pipe(STDERR, "<stderr>", ()), encoding="utf-8", errors="backslashreplace",
                           newline="\n", write_through=True)
    sys.stdout = sys.__stdout__ = out
    sys.stderr = sys.__stderr__ = err


def settle_for_frame() -> None:
    """Before a frame (a result, a display, an image, an error): what fd 1 and fd 2 hold is read first."""
    settle((STDOUT, STDERR))
