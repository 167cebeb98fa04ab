"""What a block is given before its code runs: the input files placed in its working directory,
the saved Python state's parts restored (cache, inline data or URL, each checked by SHA-256),
and the job itself written to the child."""
from __future__ import annotations

import base64
import hashlib
import os
import select
import struct
import time
from typing import TYPE_CHECKING

from . import frames, paths, transfer
from .errors import SandboxError
from .outputs import Outputs

if TYPE_CHECKING:
    from .standbys import Standby


class InputFileError(Exception):
    """An input file could not be placed: the block does not run."""


def place_inputs(workdir: str, uid: int | None, files: list[dict], max_input_bytes: int) -> dict[str, tuple]:
    """Write the input files (the payload's "files" entries) into the standby's working directory
    workdir, emptied first; uid: the block's slot uid (None: same uid as the runner). Returns, by
    name, what identifies each as placed (dev, inode, size, mtime): unchanged ones are not
    outputs. Raises InputFileError (the directory is emptied again) for a file that cannot be
    placed or files over max_input_bytes in all; SandboxError if workdir is unusable."""
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
    if total > max_input_bytes:
        raise InputFileError(f"the input files total {total} bytes, over the "
                             f"{max_input_bytes}-byte limit")
    paths.empty(workdir)
    try:
        dfd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxError(f"the standby's working directory is unusable: {exc}") from exc
    # Set in the past: a write by the block moves mtime on even within one clock tick.
    mtime = time.time_ns() - 2_000_000_000
    placed = {}
    try:
        for f in files:
            placed[f["name"]] = _place_file(dfd, f, uid, mtime)
    except InputFileError:
        paths.empty(workdir)
        raise
    finally:
        os.close(dfd)
    return placed


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


def restore_state(state: dict | None, limits: dict, outputs: Outputs, cache: transfer.PartCache) -> list:
    """The input state's parts (bytes, in order), from the cache, inline data or their URL, each
    checked against its SHA-256 and then kept in cache. On any failure: a notice in outputs, and
    [] (the block runs without state)."""
    if not state:
        return []
    specs = state["parts"]
    parts = []
    try:
        total = sum(p["bytes"] for p in specs)
        if total > limits["max_state_bytes"]:
            raise ValueError(f"its {total} bytes exceed the {limits['max_state_bytes']}-byte limit")
        for i, spec in enumerate(specs):
            data = cache.get(spec["sha256"])
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
                cache.put(spec["sha256"], data)
            if len(data) != spec["bytes"]:
                raise ValueError(f"part {i} has {len(data)} bytes, not {spec['bytes']}")
            parts.append(data)
    except ValueError as exc:
        outputs.notice(f"[the saved Python state could not be restored: {exc}]")
        return []
    return parts


def send_job(sb: Standby, job: bytes, parts: list, deadline: float) -> None:
    """The job as JSON, then each state part raw and length-prefixed (no base64, no copy),
    within the block's time: a child that stops reading cannot hold the runner. Closes the job
    pipe after. deadline: time.monotonic() seconds; past it, SandboxError. BrokenPipeError if the
    child is gone."""
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
