"""What the runner (trusted) moves over HTTP: input files and state parts it GETs, outputs it PUTs
to presigned upload slots, and the state parts it keeps by SHA-256.

Only the runner holds the URLs; the child never sees them. Presigned S3 URLs are signed with the
host header only, so any Content-Type may be sent. Redirects are refused: a presigned URL never
redirects, and following one could lead the runner elsewhere.
"""
from __future__ import annotations

import collections
import http.client
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT_S = 60.0  # per socket operation
CHUNK = 1 << 20


class TransferError(Exception):
    """A GET or PUT failed; the message names no URL (URLs carry signatures)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError for the 3xx


_opener = urllib.request.build_opener(_NoRedirect)


def _check(url: str) -> None:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise TransferError("not an http(s) URL")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}"


def _fetch(url: str, expected: int, sink) -> None:
    """GET url; sink(resp) reads the body and returns the count; exactly `expected` bytes or fail."""
    _check(url)
    try:
        with _opener.open(urllib.request.Request(url, method="GET"), timeout=TIMEOUT_S) as resp:
            got = sink(resp)
            if got == expected and resp.read(1):
                got += 1
    except TransferError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise TransferError(_describe(exc)) from None
    if got > expected:
        raise TransferError(f"more than the announced {expected} bytes")
    if got != expected:
        raise TransferError(f"{got} bytes instead of the announced {expected}")


def get(url: str, expected: int, write) -> None:
    """Stream the body of url to write(memoryview) in chunks (to disk, say)."""
    def sink(resp) -> int:
        buf = memoryview(bytearray(max(1, min(CHUNK, expected))))
        got = 0
        while got < expected:
            n = resp.readinto(buf[:min(len(buf), expected - got)])
            if not n:
                break
            write(buf[:n])
            got += n
        return got

    _fetch(url, expected, sink)


def get_bytes(url: str, expected: int) -> bytearray:
    """The body of url read straight into one preallocated buffer."""
    out = bytearray(expected)
    view = memoryview(out)

    def sink(resp) -> int:
        got = 0
        while got < expected:
            n = resp.readinto(view[got:got + CHUNK])
            if not n:
                break
            got += n
        return got

    _fetch(url, expected, sink)
    view.release()
    return out


def put(url: str, body, size: int, content_type: str) -> None:
    """PUT size bytes: body is a bytes-like object or an iterable of chunks."""
    _check(url)
    req = urllib.request.Request(url, data=body, method="PUT",
                                 headers={"Content-Length": str(size), "Content-Type": content_type})
    try:
        with _opener.open(req, timeout=TIMEOUT_S) as resp:
            resp.read()
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise TransferError(_describe(exc)) from None


class Slots:
    """The payload's upload URLs; each is used once, in order."""

    def __init__(self, urls: list[str]):
        self.urls = list(urls)
        self.used = 0

    def free(self) -> int:
        return len(self.urls) - self.used

    def upload(self, body, size: int, content_type: str) -> int:
        """PUT into the next unused slot and return its index; raises TransferError."""
        if self.used >= len(self.urls):
            raise TransferError("no upload slot left")
        index = self.used
        self.used += 1  # a failed PUT may have left half an object: never reuse the slot
        put(self.urls[index], body, size, content_type)
        return index


class PartCache:
    """State parts by SHA-256, least recently used first out, bounded in bytes. Safe because a
    runner serves one tenant; the key is always a digest the runner computed itself."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.size = 0
        self.items: collections.OrderedDict[str, bytes] = collections.OrderedDict()

    def get(self, sha: str):
        data = self.items.get(sha)
        if data is not None:
            self.items.move_to_end(sha)
        return data

    def put(self, sha: str, data) -> None:
        if sha in self.items:
            self.items.move_to_end(sha)
            return
        if len(data) > self.capacity:
            return
        self.items[sha] = data
        self.size += len(data)
        while self.size > self.capacity:
            _, old = self.items.popitem(last=False)
            self.size -= len(old)
