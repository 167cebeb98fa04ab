"""What a block produced, in order: text with the per-block cap applied (nothing cut silently),
errors, images, and the files it wrote in its working directory, each within the per-block
count and bytes of files. Placing them in the result is fit.py's job."""
from __future__ import annotations

import mimetypes
import os
import stat

from . import transfer

# Files a block wrote that are read, at most; the rest are only counted in a notice.
MAX_FILES_EXAMINED = 200
# Written files up to this size are read at once; larger ones stay open until placed (FileSource).
READ_AT_ONCE_BYTES = 1 << 20


class Outputs:
    """Ordered output items (dicts of the result contract) with the text cap applied; nothing is
    cut silently. limits: the block's limits (max_output_bytes, max_files_bytes, max_files)."""

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
        """Append text of source ("stdout", "stderr", "result"), cut at the text budget (bytes)."""
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
        """Mark, once and in place, that text was dropped; finish() words the marker."""
        if self.marker is None:
            self.marker = {"type": "text", "source": "sandbox", "text": ""}
            self.items.append(self.marker)

    def _append_text(self, source: str, text: str) -> None:
        """Streams continue their last item; each result or display is an item of its own."""
        last = self.items[-1] if self.items else None
        if source in ("stdout", "stderr") and last is not None and last is not self.marker \
                and last["type"] == "text" and last["source"] == source:
            last["text"] += text
        else:
            self.items.append({"type": "text", "source": source, "text": text})

    def display(self, text: str, mime: dict | None) -> None:
        """A result or display() as Jupyter keeps it: text/plain as `text`, the richer forms (HTML,
        Markdown, LaTeX, SVG, JSON) as `mime_bundle`. Counted against the text cap; past it the
        richer forms go first, then the text is cut."""
        size = 0
        if mime:
            import json
            size = sum(len(v.encode("utf-8", "replace")) if isinstance(v, str) else len(json.dumps(v))
                       for v in mime.values())
        data = text.encode("utf-8", "replace")
        if mime and len(data) + size > self.text_budget:
            self.dropped += size
            self.truncated()
            mime = None
        if len(data) > self.text_budget:
            self.dropped += len(data) - self.text_budget
            text = data[: self.text_budget].decode("utf-8", "ignore")
            self.text_budget = 0
            self.truncated()
        else:
            self.text_budget -= len(data) + size
        if not text and not mime:
            return
        item = {"type": "text", "source": "result", "text": text}
        if mime:
            item["mime_bundle"] = dict(mime)
        self.items.append(item)

    def notice(self, text: str) -> None:
        """A note from the sandbox itself (not counted against the text cap)."""
        self.items.append({"type": "text", "source": "sandbox", "text": text.rstrip("\n")})

    def media(self, item: dict, size: int, label: str, source) -> None:
        """A file or image item of size bytes, or a notice naming label if it is over the
        per-block count or bytes. source: the bytes, or a FileSource read only when the item is
        placed (closed here if refused)."""
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
        """Close the files still held open for placing."""
        for _item, source, _size in self.media_items:
            if isinstance(source, FileSource):
                source.close()

    def error(self, name: str, message: str, tb: str) -> None:
        self.items.append({"type": "error", "name": name, "message": message, "traceback": tb})

    def finish(self, child_dropped: int = 0) -> list[dict]:
        """The items for the result: the truncation marker worded (with the bytes dropped here and
        by the child), one trailing newline off stdout/stderr texts, empty texts left out."""
        self.dropped += child_dropped
        if self.dropped and self.marker is None:
            self.truncated()
        if self.marker is not None:
            self.marker["text"] = (f"[output truncated: {self.dropped} more bytes were dropped "
                                   f"(limit {self.limit} bytes per block)]")
        for item in self.items:
            if item["type"] == "text" and item["source"] in ("stdout", "stderr") and item["text"].endswith("\n"):
                item["text"] = item["text"][:-1]
        return [i for i in self.items if not (i["type"] == "text" and i["text"] == "" and "mime_bundle" not in i)]


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
        """All size bytes; OSError if the file shrank."""
        return b"".join(self.chunks())

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def collect_files(workdir: str, uid: int | None, outputs: Outputs, placed: dict[str, tuple]) -> None:
    """Files the block wrote in its working directory, walked through directory descriptors
    without following any link (a survivor of the block may still swap entries). Inputs
    still as placed are not outputs. uid: the block's slot uid (None: same uid as the runner);
    placed: what inputs.place_inputs returned. Adds to outputs; never raises for a file."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        top = os.open(workdir, flags | os.O_DIRECTORY)
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
                if examined >= MAX_FILES_EXAMINED:
                    unexamined += 1
                    continue
                examined += 1
                _collect_file(dfd, entry.name, name, uid, outputs, placed if depth == 0 else {})

    try:
        walk(top, "", 0)
    finally:
        os.close(top)
    if unexamined:
        outputs.notice(f"[{unexamined} more files were not examined]")


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
        if size <= READ_AT_ONCE_BYTES:
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
