"""Input files, upload slots and the state as content-addressed parts, through real workers.

A tiny HTTP server on 127.0.0.1 plays S3: it serves GETs from a dict and records PUTs. The
runner (trusted) talks to it; the child never sees a URL."""
import base64
import hashlib
import json
import os
import pickle

import pytest

from conftest import Worker, errors, postures, texts
from s3_double import Store, next_state, start_store

RESULT_LIMIT = 300_000


@pytest.fixture(scope="module")
def store():
    srv = start_store()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module", params=postures())
def tw(request, store):
    """A worker with a small result limit, so that slots are needed for modest outputs. In the
    lambda posture the store's port is the only way out of the worker's network namespace (as
    the S3 gateway endpoint is inside Lambda's VPC)."""
    w = Worker(request.param, {"SANDBOX_MAX_RESULT_BYTES": str(RESULT_LIMIT),
                               "SANDBOX_MAX_INPUT_BYTES": str(8_000_000),
                               "SANDBOX_LAMBDA_FORWARD_PORTS": str(store.server_address[1])})
    yield w
    w.close()


def inline(name: str, data: bytes, **extra) -> dict:
    return {"name": name, "bytes": len(data), "data": base64.b64encode(data).decode(), **extra}


def files_of(r: dict) -> dict:
    return {o["filename"]: o for o in r["outputs"] if o["type"] == "file"}


class Session:
    """Carries the state from block to block as the API would: inline parts as data, parts in
    slots and unchanged parts by URL (the API keeps every part it has seen by SHA-256)."""

    def __init__(self, worker: Worker, store: Store, slots: int = 4):
        self.w, self.store, self.nslots = worker, store, slots
        self.state = None
        self.known: dict[str, dict] = {}  # sha256 -> {"data"} or {"url"}

    def run(self, code: str, **fields) -> dict:
        uploads = self.store.slots(self.nslots)
        payload = {"want_state": True, "uploads": uploads, **fields}
        if self.state is not None:
            payload["state"] = self.state
        r = self.w.run(code, **payload)
        if "state" in r:
            self.state = next_state(r["state"], uploads, self.known)
        return r


# --- input files -----------------------------------------------------------------------------------

def test_inline_and_url_input_files_are_readable_and_not_returned(tw, store):
    csv = b"a,b\n1,2\n3,4\n"
    blob = os.urandom(300_000)
    url = store.put_object(blob)
    code = ("import hashlib, pandas as pd\nprint(int(pd.read_csv('data.csv').b.sum()))\n"
            "print(hashlib.sha256(open('blob.bin', 'rb').read()).hexdigest())")
    r = tw.run(code, files=[inline("data.csv", csv), {"name": "blob.bin", "bytes": len(blob), "url": url}])
    assert r["status"] == "completed", r
    assert texts(r, "stdout").split() == ["6", hashlib.sha256(blob).hexdigest()]
    assert files_of(r) == {}


def test_the_child_never_sees_the_urls(tw, store):
    url = store.put_object(b"x" * 10)
    # Each needle exists only as an argument: the code's own text (in the job, in linecache)
    # holds its halves, and no dict or list holds it whole.
    port = str(store.server_address[1])
    code = ("import gc\ndef seen(n):\n    return any(n in repr(o) for o in gc.get_objects() if isinstance(o, (dict, list)))\n"
            f"print(seen('X-Amz-' + 'Signature'), seen('secret-' + 'obj'), seen('127.0.0.1:' + '{port[:2]}' + '{port[2:]}'))")
    r = tw.run(code, files=[{"name": "x.txt", "bytes": 10, "url": url}], uploads=store.slots(2))
    assert texts(r, "stdout") == "False False False"


def test_read_only_inputs(tw):
    code = ("import os\nprint(oct(os.stat('ro.txt').st_mode & 0o777))\n"
            "try:\n    open('ro.txt', 'w')\nexcept PermissionError:\n    print('no-write')\n")
    if tw.posture == "root":
        # Deployed (one uid): 0444 is advisory, the block could chmod or remove its copy.
        code += ("ops = {'chmod': lambda: os.chmod('ro.txt', 0o666), 'rename': lambda: os.rename('ro.txt', 'x'),\n"
                 "       'remove': lambda: os.remove('ro.txt')}\nfor name, op in ops.items():\n"
                 "    try:\n        op()\n        print(name, 'done')\n    except PermissionError:\n"
                 "        print(name, 'refused')\n")
    r = tw.run(code, files=[inline("ro.txt", b"keep me")])
    lines = texts(r, "stdout").splitlines()
    assert lines[:2] == ["0o444", "no-write"]
    if tw.posture == "root":
        assert lines[2:] == ["chmod refused", "rename refused", "remove refused"]
    assert files_of(r) == {}


def test_a_modified_writable_input_is_returned_and_an_unchanged_one_is_not(tw):
    code = ("import os\nprint(oct(os.stat('w.txt').st_mode & 0o777), os.stat('w.txt').st_uid == os.getuid())\n"
            "open('w.txt', 'a').write(' world')\nopen('new.txt', 'w').write('new')")
    r = tw.run(code, files=[inline("w.txt", b"hello", writable=True), inline("same.txt", b"same", writable=True)])
    assert texts(r, "stdout") == "0o644 True"
    out = files_of(r)
    assert set(out) == {"w.txt", "new.txt"}
    assert base64.b64decode(out["w.txt"]["data"]) == b"hello world"


def test_a_same_size_rewrite_within_the_same_tick_is_still_an_output(tw):
    r = tw.run("open('w.txt', 'w').write('HELLO')", files=[inline("w.txt", b"hello", writable=True)])
    assert base64.b64decode(files_of(r)["w.txt"]["data"]) == b"HELLO"


def test_a_replaced_input_is_an_output(tw):
    code = "import os\nopen('tmp', 'w').write('v2')\nos.replace('tmp', 'w.txt')"
    r = tw.run(code, files=[inline("w.txt", b"v1", writable=True)])
    assert base64.b64decode(files_of(r)["w.txt"]["data"]) == b"v2"


def test_the_working_directory_still_works_as_home_and_tmpdir(tw):
    code = ("import os, tempfile\nwith tempfile.NamedTemporaryFile() as f:\n    f.write(b'x')\n"
            "os.makedirs('sub/deeper')\nopen('sub/deeper/f.txt', 'w').write('ok')\n"
            "print(os.environ['HOME'] == os.getcwd(), oct(os.stat('.').st_mode & 0o7777))")
    r = tw.run(code, files=[inline("in.txt", b"x")])
    home, mode = texts(r, "stdout").split()
    assert home == "True"
    assert mode == ("0o1770" if tw.posture == "root" else "0o700")
    assert set(files_of(r)) == {"sub/deeper/f.txt"}


@pytest.mark.parametrize("case", ["fetch-404", "too-short", "too-long", "duplicate", "bad-size-inline", "over-limit"])
def test_bad_input_files_stop_the_block_before_it_runs(tw, store, case):
    good = inline("ok.txt", b"ok")
    files = {
        "fetch-404": [good, {"name": "gone.csv", "bytes": 5, "url": store.url("no-such-object")}],
        "too-short": [{"name": "short.bin", "bytes": 100, "url": store.put_object(b"x" * 99)}],
        "too-long": [{"name": "long.bin", "bytes": 100, "url": store.put_object(b"x" * 101)}],
        "duplicate": [good, inline("ok.txt", b"again")],
        "bad-size-inline": [{**inline("f.txt", b"abc"), "bytes": 4}],
        "over-limit": [{"name": "huge.bin", "bytes": 9_000_000, "url": store.url("never-fetched")}],
    }[case]
    r = tw.run("print('ran')\nopen('marker', 'w').write('x')", files=files, want_state=True)
    assert r["status"] == "failed"
    (err,) = errors(r)
    assert err["name"] == "InputFileError"
    name = {"fetch-404": "gone.csv", "too-short": "short.bin", "too-long": "long.bin", "duplicate": "ok.txt",
            "bad-size-inline": "f.txt", "over-limit": "8000000-byte limit"}[case]
    assert name in err["message"]
    assert "X-Amz-Signature" not in err["message"]
    assert texts(r) == "" and files_of(r) == {} and "state" not in r
    # The standby that was not used takes the next block, from an empty directory.
    r = tw.run("import os\nprint(sorted(os.listdir('.')))")
    assert texts(r, "stdout") == "[]"


# --- outputs to upload slots -------------------------------------------------------------------------

def test_a_large_file_goes_to_an_upload_slot(tw, store):
    uploads = store.slots(2)
    code = ("import random\nrandom.seed(7)\nopen('big.bin', 'wb').write(random.randbytes(3_000_000))\n"
            "open('report.csv', 'w').write('a\\n1\\n')")
    r = tw.run(code, uploads=uploads)
    out = files_of(r)
    big = out["big.bin"]
    assert big["slot"] == 0 and "data" not in big and big["bytes"] == 3_000_000
    import random
    random.seed(7)
    body, headers = store.puts[uploads[0].split("/")[-1].split("?")[0]]
    assert body == random.randbytes(3_000_000)
    assert headers["Content-Length"] == "3000000" and headers["Content-Type"] == "application/octet-stream"
    assert base64.b64decode(out["report.csv"]["data"]) == b"a\n1\n"
    assert len(json.dumps(r)) <= RESULT_LIMIT


def test_a_large_image_goes_to_a_slot_and_reports_its_bytes(tw, store):
    uploads = store.slots(1)
    code = ("import numpy as np, matplotlib.pyplot as plt\nnp.random.seed(1)\n"
            "plt.figure(figsize=(6, 6))\nplt.imshow(np.random.rand(400, 400))\nNone")
    r = tw.run(code, uploads=uploads)
    (img,) = [o for o in r["outputs"] if o["type"] == "image"]
    assert img["slot"] == 0 and img["bytes"] > RESULT_LIMIT
    body, headers = store.puts[uploads[0].split("/")[-1].split("?")[0]]
    assert body.startswith(b"\x89PNG") and len(body) == img["bytes"] and headers["Content-Type"] == "image/png"


def test_each_slot_is_used_once_and_what_finds_none_is_named(tw, store):
    # Room for one inline (base64 of 200 kB), one slot: of three files, one is left out.
    uploads = store.slots(1)
    code = "import os\nfor n in ('a.bin', 'b.bin', 'c.bin'):\n    open(n, 'wb').write(os.urandom(200_000))"
    r = tw.run(code, uploads=uploads)
    out = files_of(r)
    assert sorted("slot" if "slot" in f else "data" for f in out.values()) == ["data", "slot"]
    assert [f["slot"] for f in out.values() if "slot" in f] == [0]
    (missing,) = {"a.bin", "b.bin", "c.bin"} - set(out)
    assert f"file {missing} was left out" in texts(r, "sandbox")


def test_a_failed_upload_is_a_notice(tw, store):
    uploads = ["http://127.0.0.1:9/refused"]  # nothing listens on the discard port
    r = tw.run("import os\nopen('a.bin', 'wb').write(os.urandom(400_000))", uploads=uploads)
    assert files_of(r) == {}
    assert "file a.bin was left out: its upload failed" in texts(r, "sandbox")


# --- state as parts ----------------------------------------------------------------------------------

def test_state_round_trip_with_a_dataframe_a_function_and_a_class(tw, store):
    s = Session(tw, store)
    r1 = s.run("import numpy as np, pandas as pd\nnp.random.seed(0)\n"
               "df = pd.DataFrame(np.random.rand(65536, 4), columns=list('abcd'))\n"
               "def double(x): return 2 * x\nclass P:\n    def __init__(self, v): self.v = v\np = P(21)")
    assert r1["status"] == "completed", r1
    parts = r1["state"]["parts"]
    assert len(parts) == 2 and "data" in parts[0] and parts[0]["bytes"] < 65536
    assert parts[1]["bytes"] == 65536 * 4 * 8 and parts[1]["slot"] == 0 and "data" not in parts[1]
    r2 = s.run("print(double(p.v), df.shape)\ndf.iloc[0, 0] = 5\nprint(df.iloc[0, 0])")
    assert texts(r2, "stdout").split("\n") == ["42 (65536, 4)", "5.0"]
    # The frame was written to, so its buffer is a new part.
    assert r2["state"]["parts"][1]["sha256"] != parts[1]["sha256"] and "slot" in r2["state"]["parts"][1]
    r3 = s.run("print(df.iloc[0, 0], type(p).__name__)")
    assert texts(r3, "stdout") == "5.0 P"


def test_an_unchanged_part_is_a_reference_and_is_not_fetched_or_uploaded_again(tw, store):
    s = Session(tw, store)
    r1 = s.run("import numpy as np\narr = np.arange(1_000_000, dtype=np.float64)")
    big = r1["state"]["parts"][1]
    puts, gets = len(store.puts), len(store.gets)
    r2 = s.run("n = len(arr)")
    assert r2["state"]["parts"][1] == {"sha256": big["sha256"], "bytes": big["bytes"]}
    assert len(store.puts) == puts and len(store.gets) == gets  # from the runner's cache, not the URL
    r3 = s.run("print(n, arr[-1])")
    assert texts(r3, "stdout") == "1000000 999999.0"


def _foreign_state(store: Store, tamper: bool = False) -> dict:
    """A state the runner has never seen: made here, its large part behind a URL."""
    import numpy as np
    bufs = []
    # Random: a state no earlier block made, so the part is in no cache.
    main = pickle.dumps({"z": np.random.randint(0, 1000, 100_000)}, protocol=5,
                        buffer_callback=lambda b: bufs.append(bytes(b.raw())))
    (buf,) = bufs
    served = bytearray(buf)
    if tamper:
        served[0] ^= 1
    return {"parts": [{"sha256": hashlib.sha256(main).hexdigest(), "bytes": len(main),
                       "data": base64.b64encode(main).decode()},
                      {"sha256": hashlib.sha256(buf).hexdigest(), "bytes": len(buf), "url": store.put_object(bytes(served))}]}


def test_a_part_not_in_the_cache_is_fetched_by_url(tw, store):
    state = _foreign_state(store)
    r = tw.run("print(z.shape, z.flags.writeable)", state=state)
    assert texts(r) == "(100000,) True"
    assert state["parts"][1]["url"].split("/")[-1].split("?")[0] in store.gets


def test_a_fetched_part_that_fails_its_checksum_is_a_notice(tw, store):
    r = tw.run("print('z' in globals())", state=_foreign_state(store, tamper=True))
    assert r["status"] == "completed"
    assert "[the saved Python state could not be restored: part 1 does not match its SHA-256]" in texts(r, "sandbox")
    assert texts(r, "stdout") == "False"


def test_a_part_without_data_or_url_that_is_not_cached_is_a_notice(tw, store):
    state = _foreign_state(store)
    del state["parts"][1]["url"]
    r = tw.run("print(1)", state=state)
    assert "came without data or url" in texts(r, "sandbox") and texts(r, "stdout") == "1"


def test_state_over_the_limit_is_a_notice(tw, store):
    r = tw.run("import numpy as np\na = np.zeros(200_000)", want_state=True, uploads=store.slots(2),
               limits={"max_state_bytes": 1_000_000})
    assert "state" not in r
    note = texts(r, "sandbox")
    assert note.startswith("[Python state was not saved: ") and "exceeds the 1000000-byte limit]" in note


def test_a_large_new_part_without_a_slot_or_room_is_not_saved_at_all(tw):
    r = tw.run("import numpy as np\na = np.ones(100_000)", want_state=True)
    assert "state" not in r
    assert "bytes of new parts do not fit in the result, and 0 upload slots were given]" in texts(r, "sandbox")


def test_unpicklable_values_are_dropped_and_the_rest_kept_as_parts(tw, store):
    s = Session(tw, store)
    r = s.run("import numpy as np\ng = (i for i in range(3))\nbig = np.ones(100_000)")
    assert "g (generator" in texts(r, "sandbox") and len(r["state"]["parts"]) == 2
    r = s.run("print('g' in globals(), big.sum())")
    assert texts(r, "stdout") == "False 100000.0"


@pytest.mark.parametrize("manifest", [
    {"parts": [{"sha256": "ab" * 32, "bytes": 10, "ref": True}]},     # a part the block was not given
    {"parts": [{"sha256": "ab" * 32, "bytes": 10 ** 12, "ref": False}]},  # over the state limit
    {"parts": []},
], ids=["ref-not-given", "over-limit", "empty"])
def test_a_forged_state_manifest_is_a_protocol_violation(tw, manifest):
    frame = json.dumps(manifest).encode()
    code = ("import os\nfor fd in [int(f) for f in os.listdir('/proc/self/fd')]:\n    try:\n"
            "        if os.readlink(f'/proc/self/fd/{fd}').startswith('pipe:') and fd > 2:\n"
            f"            os.write(fd, b's' + ({len(frame)}).to_bytes(4, 'big') + {frame!r})\n"
            "    except OSError:\n        pass\nimport time\ntime.sleep(5)")
    r = tw.run(code, want_state=True, limits={"timeout_ms": 3000})
    assert r["status"] == "failed" and "state" not in r
    assert any("protocol violation" in e["message"] for e in errors(r))
