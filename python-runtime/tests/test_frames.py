"""The runner's frame parser, on its own: large frames arrive whole and cheaply, caps hold."""
import os
import threading
import time

import pytest

from sandbox import frames
from sandbox.collect import FrameReader
from sandbox.errors import SandboxError


def _pump(payloads: list[tuple[bytes, bytes]], caps: dict) -> list[tuple[bytes, bytes]]:
    r, w = os.pipe()

    def writer():
        for kind, data in payloads:
            frames.write_frame(w, kind, data)
        os.close(w)

    t = threading.Thread(target=writer)
    t.start()
    reader = FrameReader(caps)
    got = []
    while True:
        out = reader.read_from(r)
        if out is None:
            break
        got += out
    t.join()
    os.close(r)
    return got


def test_tens_of_megabytes_in_one_frame_among_small_ones():
    big = os.urandom(48 << 20)
    sent = [(frames.STDOUT, b"a" * 10)] * 1000 + [(frames.PART, big)] + [(frames.STDOUT, b"z")] * 3
    t = time.monotonic()
    got = _pump(sent, {frames.STDOUT: 100, frames.PART: 64 << 20})
    elapsed = time.monotonic() - t
    assert [(k, bytes(p)) for k, p in got] == sent
    assert elapsed < 2.0, elapsed  # linear: a quadratic parser takes minutes here


def test_a_frame_over_its_cap_is_refused_from_its_header():
    reader = FrameReader({frames.PART: 1 << 20})
    with pytest.raises(SandboxError, match="exceeds"):
        reader.feed(frames.HEADER.pack(frames.PART, (1 << 20) + 1))


def test_an_unknown_frame_type_is_refused():
    with pytest.raises(SandboxError, match="unknown frame type"):
        FrameReader({frames.STDOUT: 10}).feed(frames.HEADER.pack(frames.PART, 1) + b"x")


def test_the_part_cache_is_bounded_and_least_recently_used_goes_first():
    from sandbox.transfer import PartCache
    cache = PartCache(10)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    assert cache.get("a") == b"1234"  # a is now the most recent
    cache.put("c", b"1234")           # 12 > 10: b goes
    assert cache.get("b") is None and cache.get("a") and cache.get("c")
    cache.put("huge", b"x" * 11)      # larger than the whole cache: not kept, nothing evicted
    assert cache.get("huge") is None and cache.size == 8


def test_transfer_config_defaults_and_overrides():
    from sandbox.config import Config
    c = Config.from_env({"SANDBOX_POSTURE": "deployed"} if os.geteuid() else {})
    assert c.max_input_bytes == 1 << 30 and c.state_cache_bytes == 256 << 20
    assert c.limits["max_state_bytes"] == c.limits["max_files_bytes"] == 256 << 20
    c = Config.from_env({"SANDBOX_MAX_INPUT_BYTES": "0", "SANDBOX_STATE_CACHE_MB": "16"})
    assert c.max_input_bytes == 0 and c.state_cache_bytes == 16 << 20
