"""A block behaves like a Jupyter cell (issue 13), in every posture, through a real worker.

One section per kind of fault the issue found; each test fails without the fix it names."""
import base64
import json
import os
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import PYTHON, RUNTIME, errors, texts


def items(r: dict) -> list[tuple]:
    """(type, source or '', text) of each output item, images and files as their type."""
    out = []
    for o in r["outputs"]:
        if o["type"] == "text":
            out.append((o["source"], o["text"]))
        elif o["type"] == "error":
            out.append(("error", o["name"]))
        else:
            out.append((o["type"],))
    return out


def images(r: dict) -> list[dict]:
    return [o for o in r["outputs"] if o["type"] == "image"]


# --- 1. the block runs as __main__, in a process that looks like a kernel's ----------------------

def test_classes_and_functions_of_a_block_pickle_and_unpickle(worker):
    # Fails when the namespace is not sys.modules['__main__']: pickle looks the class up there.
    r = worker.run("import pickle\nclass P:\n    def __init__(self, v):\n        self.v = v\n"
                   "def double(x):\n    return 2 * x\n"
                   "p = pickle.loads(pickle.dumps(P(21)))\nprint(pickle.loads(pickle.dumps(double))(p.v))")
    assert r["status"] == "completed", r
    assert texts(r, "stdout") == "42"


def test_unittest_main_finds_runs_and_reports_the_blocks_tests(worker):
    # Before: "Ran 0 tests ... OK" (unittest looked in the sandbox's own __main__).
    r = worker.run("import unittest\nclass T(unittest.TestCase):\n    def test_ok(self):\n        self.assertEqual(1, 1)\n"
                   "    def test_bad(self):\n        self.assertEqual(1, 2)\n"
                   "result = unittest.main(argv=['x'], exit=False).result\n"
                   "print(result.testsRun, len(result.failures))")
    assert texts(r, "stdout") == "2 1"
    err = texts(r, "stderr")
    assert "Ran 2 tests" in err and "FAILED (failures=1)" in err


def test_doctest_testmod_finds_the_blocks_docstrings(worker):
    r = worker.run("def add(a, b):\n    '''\n    >>> add(1, 2)\n    3\n    >>> add(1, 1)\n    3\n    '''\n"
                   "    return a + b\nimport doctest\nprint(doctest.testmod())")
    assert texts(r, "stdout").splitlines()[-1] == "TestResults(failed=1, attempted=2)"


def test_argv_streams_and_path_look_like_a_kernels(worker):
    r = worker.run("import sys, os, faulthandler\n"
                   "print(repr(sys.argv), sys.stdout.encoding, sys.stderr.encoding)\n"
                   "print(sys.stdout.fileno(), sys.stderr.fileno(), sys.stdout.isatty())\n"
                   "sys.stdout.buffer.write('bytes \\u00e9\\n'.encode())\n"
                   "faulthandler.enable()\n"
                   "print(__name__, sys.modules['__main__'].__dict__ is globals())\n"
                   "print(sys.path[0] == '', [p for p in sys.path if 'python-runtime' in p or p.endswith('sandbox')])")
    assert r["status"] == "completed", r
    assert texts(r, "stdout").splitlines() == [
        "[''] utf-8 utf-8", "1 2 False", "bytes \u00e9", "__main__ True", "True []"]


def test_a_block_imports_a_module_from_its_working_directory(worker):
    r = worker.run("open('helper.py', 'w').write('def hi():\\n    return \"hi from helper\"\\n')\n"
                   "import helper\nprint(helper.hi())")
    assert texts(r, "stdout") == "hi from helper"


def test_multiprocessing_with_the_blocks_own_function(worker):
    code = ("import multiprocessing as mp\ndef square(x):\n    return x * x\n"
            "with mp.get_context('fork').Pool(2) as pool:\n    print(pool.map(square, [1, 2, 3]))")
    r = worker.run(code, limits={"timeout_ms": 20000})
    if worker.posture == "lambda":
        # No /dev/shm (as inside Lambda): a clear message, not a bare FileNotFoundError.
        assert r["status"] == "failed"
        (err,) = errors(r)
        assert err["name"] == "FileNotFoundError"
        assert "/dev/shm" in err["message"] and "ThreadPoolExecutor" in err["message"]
        # What works there instead.
        r = worker.run("import multiprocessing as mp\ndef square(x, conn):\n    conn.send(x * x)\n"
                       "a, b = mp.Pipe()\np = mp.get_context('fork').Process(target=square, args=(7, b))\n"
                       "p.start()\nprint(a.recv())\np.join()")
        assert texts(r, "stdout") == "49", r
    else:
        assert r["status"] == "completed", r
        assert texts(r, "stdout") == "[1, 4, 9]"


# --- 2. asyncio: the event loop's socket pair, and nothing more ------------------------------------

def test_asyncio_run_works(worker):
    # Before: "network access is disabled in the sandbox" (the audit hook refused the loop's pair).
    r = worker.run("import asyncio\nasync def one(i):\n    await asyncio.sleep(0.01)\n    return i\n"
                   "async def main():\n    loop = asyncio.get_running_loop()\n"
                   "    total = sum(await asyncio.gather(*(one(i) for i in range(5))))\n"
                   "    return total + await loop.run_in_executor(None, sum, [10, 20])\n"
                   "print(asyncio.run(main()))")
    assert r["status"] == "completed", r
    assert texts(r, "stdout") == "40"


def test_a_socket_pair_works_but_no_other_socket_can_be_made(worker):
    r = worker.run("import socket\na, b = socket.socketpair()\na.sendall(b'ping')\nprint(b.recv(4).decode())\n"
                   "for args in [(), (socket.AF_UNIX,), (socket.AF_INET6,), (socket.AF_INET, socket.SOCK_DGRAM),\n"
                   "             (socket.AF_PACKET, socket.SOCK_RAW), (socket.AF_NETLINK, socket.SOCK_RAW)]:\n"
                   "    try:\n        socket.socket(*args)\n        print('made', args)\n"
                   "    except PermissionError as e:\n        print('refused')\n"
                   "try:\n    socket.fromfd(a.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)\n    print('made fromfd')\n"
                   "except PermissionError:\n    print('refused')")
    assert r["status"] == "completed", r
    assert texts(r, "stdout").splitlines() == ["ping"] + ["refused"] * 7


@pytest.fixture
def unix_listeners():
    """A datagram and a stream socket bound to paths any uid may reach (mode 0777 in a 0777
    directory), recording whatever arrives."""
    base = tempfile.mkdtemp(prefix="sbx-unix-", dir="/var/tmp")
    os.chmod(base, 0o777)
    dgram_path, stream_path = os.path.join(base, "dgram"), os.path.join(base, "stream")
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.bind(dgram_path)
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.bind(stream_path)
    stream.listen(4)
    for path in (dgram_path, stream_path):
        os.chmod(path, 0o777)
    dgram.settimeout(0.1)
    stream.settimeout(0.1)
    hits = []
    stop = threading.Event()

    def listen():
        while not stop.is_set():
            for sock in (dgram, stream):
                try:
                    if sock is dgram:
                        hits.append(sock.recv(100))
                    else:
                        conn, _ = sock.accept()
                        hits.append(conn.recv(100))
                        conn.close()
                except OSError:
                    continue

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    yield dgram_path, stream_path, hits
    stop.set()
    t.join()
    dgram.close()
    stream.close()
    import shutil
    shutil.rmtree(base, ignore_errors=True)


def test_a_socket_pair_cannot_be_pointed_at_a_path_outside_the_block(worker, unix_listeners):
    """The pair allowed for asyncio reaches nothing outside the block: through the socket module
    the audit hook refuses connect/sendto/bind; around it (_socket, no audit) a stream pair is
    connected for good (EISCONN), and a datagram pair, which could be re-pointed at any bound
    datagram socket (/dev/log ...), is refused by seccomp. Inside Lambda (no nested seccomp) a
    block can make any socket anyway; there the walls are the uid, the read-only image and the
    VPC, see docs/security.md."""
    dgram_path, stream_path, hits = unix_listeners
    code = (f"import socket, _socket\nD, S = {dgram_path!r}, {stream_path!r}\n"
            "a, b = socket.socketpair()\n"
            "for what, call in [('connect', lambda: a.connect(S)), ('sendto', lambda: a.sendto(b'x', D)),\n"
            "                   ('sendmsg', lambda: a.sendmsg([b'x'], [], 0, D))]:\n"
            "    try:\n        call()\n        print(what, 'done')\n"
            "    except OSError as e:\n        print(what, type(e).__name__)\n"
            # Around the audit hook: libc's connect and sendto, straight from ctypes.
            "import ctypes, struct\nlibc = ctypes.pythonapi\n"
            "libc.__errno_location.restype = ctypes.POINTER(ctypes.c_int)\n"
            "ra, rb = _socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            "addr = lambda p: struct.pack('H108s', socket.AF_UNIX, p.encode())\n"
            "rc = libc.connect(ra.fileno(), addr(S), 110)\nprint('raw connect', rc, libc.__errno_location().contents.value)\n"
            "rc = libc.sendto(ra.fileno(), b'x', 1, 0, addr(D), 110)\nprint('raw sendto', rc, libc.__errno_location().contents.value)\n"
            "try:\n    _socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)\n    print('dgram pair made')\n"
            "except OSError as e:\n    print('dgram pair', type(e).__name__)")
    r = worker.run(code)
    assert r["status"] == "completed", r
    lines = texts(r, "stdout").splitlines()
    assert lines[:3] == ["connect PermissionError", "sendto PermissionError", "sendmsg PermissionError"]
    import errno
    assert lines[3:5] == [f"raw connect -1 {errno.EISCONN}", f"raw sendto -1 {errno.EISCONN}"]
    if worker.posture == "lambda":
        assert lines[5] == "dgram pair made"  # no seccomp inside Lambda (documented)
    else:
        assert lines[5] == "dgram pair PermissionError"
    time.sleep(0.3)
    assert hits == []


# --- 3. notebook conventions ------------------------------------------------------------------------

def test_top_level_await_and_the_trailing_semicolon(worker):
    r = worker.run("import asyncio\nasync def f():\n    await asyncio.sleep(0)\n    return 3\nx = await f()\nx * 2")
    assert items(r) == [("result", "6")]
    assert worker.run("1 + 1;")["outputs"] == []
    assert worker.run("1 + 1  ;  # hidden")["outputs"] == []
    assert items(worker.run("x = 'a;'\nx")) == [("result", "'a;'")]


def test_display_shows_each_object_as_an_item_in_order(worker):
    r = worker.run("print('a')\ndisplay(1, 'two')\nprint('b')\nimport os\nos.write(1, b'c\\n')\ndisplay([3])\n4")
    assert items(r) == [("stdout", "a"), ("result", "1"), ("result", "'two'"), ("stdout", "b\nc"),
                        ("result", "[3]"), ("result", "4")]


def test_a_result_keeps_its_mime_bundle(worker):
    r = worker.run("import pandas as pd\npd.DataFrame({'a': [1, 2]})")
    (item,) = r["outputs"]
    assert item["source"] == "result" and item["text"].split() == ["a", "0", "1", "1", "2"]
    assert "<table" in item["mime_bundle"]["text/html"]
    r = worker.run("class R:\n    def __repr__(self): return 'R()'\n    def _repr_html_(self): return '<b>r</b>'\n"
                   "    def _repr_markdown_(self): return '*r*'\n    def _repr_latex_(self): return '$r$'\n"
                   "    def _repr_svg_(self): return '<svg/>'\n    def _repr_json_(self): return {'r': [1, 2]}\nR()")
    (item,) = r["outputs"]
    assert item == {"type": "text", "source": "result", "text": "R()", "mime_bundle": {
        "text/html": "<b>r</b>", "text/markdown": "*r*", "text/latex": "$r$", "image/svg+xml": "<svg/>",
        "application/json": {"r": [1, 2]}}}
    r = worker.run("from IPython.display import HTML, Markdown, display\ndisplay(HTML('<i>x</i>'), Markdown('# t'))")
    assert [o.get("mime_bundle") for o in r["outputs"]] == [{"text/html": "<i>x</i>"}, {"text/markdown": "# t"}]
    r = worker.run("import sympy\nsympy.Symbol('x') ** 2")
    assert r["outputs"][0]["text"] == "x**2" and r["outputs"][0]["mime_bundle"]["text/latex"] == "$\\displaystyle x^{2}$"


def test_a_figure_as_the_last_value_or_displayed_is_an_image(worker):
    r = worker.run("from matplotlib.figure import Figure\nfig = Figure()\nfig.subplots().plot([1, 3, 2])\nfig")
    assert items(r) == [("image",)]
    assert base64.b64decode(images(r)[0]["data"]).startswith(b"\x89PNG")
    r = worker.run("from matplotlib.figure import Figure\nfig = Figure()\nfig.subplots().plot([1, 3, 2])\n"
                   "print('a')\ndisplay(fig)\nprint('b')")
    assert items(r) == [("stdout", "a"), ("image",), ("stdout", "b")]


def test_rich_forms_past_the_output_limit_go_first(worker):
    r = worker.run("class Big:\n    def __repr__(self): return 'big'\n    def _repr_html_(self): return 'x' * 200000\nBig()",
                   limits={"max_output_bytes": 65536})
    texts_ = [o for o in r["outputs"] if o["type"] == "text"]
    assert {"type": "text", "source": "result", "text": "big"} in texts_
    assert not any("mime_bundle" in o for o in texts_)
    assert r["output_dropped_bytes"] >= 200000
    assert "output truncated" in texts(r, "sandbox")


def test_magics_work_and_shell_commands_stay_refused(worker):
    if _cell_mode(worker) != "ipython":
        pytest.skip("IPython is not installed here")
    r = worker.run("%timeit -n 1 -r 1 sum(range(10))\nx = 5\n%who_ls")
    assert r["status"] == "completed", r
    assert "per loop" in texts(r, "stdout") and "'x'" in texts(r)
    r = worker.run("!id")
    assert r["status"] == "failed" and errors(r)[0]["name"] == "PermissionError"


def _cell_mode(worker) -> str:
    worker.settle()
    reply = worker.raw({"version": 1, "request_id": "probe", "code": "", "action": "probe"})
    return reply["result"]["zygote"].get("cell", "plain")


# --- 4. streams: what the process wrote, in order -------------------------------------------------

def test_fd_level_writes_keep_their_order_and_stream(worker):
    # Before: one stdout item "before after middle err" (reordered, and fd 2 labelled stdout).
    r = worker.run("print('before'); import os; os.write(1, b'middle\\n'); print('after'); os.write(2, b'err\\n')")
    assert items(r) == [("stdout", "before\nmiddle\nafter"), ("stderr", "err"), ("result", "4")]
    r = worker.run("import os, sys\nos.write(2, b'e1\\n')\nprint('o1')\nos.write(2, b'e2\\n')\nprint('o2')\n"
                   "sys.stderr.write('e3\\n')\nos.write(1, b'o3\\n')\nNone")
    assert items(r) == [("stderr", "e1"), ("stdout", "o1"), ("stderr", "e2"), ("stdout", "o2"),
                        ("stderr", "e3"), ("stdout", "o3")]


def test_c_level_and_child_process_output_is_captured(worker):
    # libc's own stdio (buffered in the process, flushed at the end) and a forked process's writes.
    r = worker.run("import ctypes, os\nctypes.pythonapi.puts(b'from C')\n"
                   "if os.fork() == 0:\n    os.write(1, b'from the child\\n')\n    os._exit(0)\n"
                   "os.wait()\nprint('parent')")
    out = texts(r, "stdout").splitlines()
    assert out[:2] == ["from the child", "parent"] and out[-1] == "from C", r


def test_output_of_threads_that_outlive_the_last_line_is_kept(worker):
    r = worker.run("import threading, time\ndef work():\n    time.sleep(0.3)\n    print('late')\n"
                   "threading.Thread(target=work).start()\nprint('early')")
    assert items(r) == [("stdout", "early\nlate")], r
    # An executor nobody shut down: its idle workers go as at interpreter exit, the block ends.
    t = time.monotonic()
    r = worker.run("from concurrent.futures import ThreadPoolExecutor\nimport time\nex = ThreadPoolExecutor(2)\n"
                   "ex.submit(lambda: (time.sleep(0.2), print('done')))\nprint('submitted')",
                   limits={"timeout_ms": 10000})
    assert items(r) == [("stdout", "submitted\ndone")], r
    assert time.monotonic() - t < 5


def test_threads_still_running_at_the_time_limit_are_named_in_a_notice(worker):
    r = worker.run("import threading, time\nticked = threading.Event()\n"
                   "def work():\n    print('tick')\n    ticked.set()\n    time.sleep(30)\n"
                   "threading.Thread(target=work, name='slow').start()\n"
                   "threading.Thread(target=lambda: time.sleep(30), name='bg', daemon=True).start()\n"
                   "ticked.wait()\nprint('main done')", limits={"timeout_ms": 2500})
    assert r["status"] == "completed", r
    assert texts(r, "stdout") == "tick\nmain done"
    notices = texts(r, "sandbox")
    assert "still running at its time limit (slow)" in notices
    assert "daemon thread(s) were still running when the block ended (bg)" in notices


# --- 5. figures: each once, never blank --------------------------------------------------------------

@pytest.mark.parametrize("code, expect", [
    # The example: the second savefig makes a new, empty figure; it is named, never an image.
    ("plt.plot([1, 2]); plt.show(); plt.savefig('c.png')",
     [("image",), ("result", "<Figure size 640x480 with 0 Axes>"), ("file",)]),
    ("plt.plot([1, 2]); plt.savefig('c.png'); plt.show()", [("image",), ("file",)]),
    ("plt.plot([1, 2]); plt.savefig('c.png'); plt.close()", [("file",)]),
    ("fig, ax = plt.subplots(); ax.plot([1, 2]); fig", [("image",)]),
    ("fig, ax = plt.subplots(); ax.plot([1, 2]); display(fig); ax.set_title('changed')",
     [("image",), ("result", "Text(0.5, 1.0, 'changed')"), ("image",)]),
    ("plt.plot([1, 2]); plt.show(); plt.show()", [("image",)]),
    ("plt.figure(); plt.plot([1]); plt.figure(); plt.plot([2]); None", [("image",), ("image",)]),
], ids=["show-then-savefig", "savefig-then-show", "savefig-then-close", "last-value", "display-then-change",
        "show-twice", "two-figures"])
def test_each_figure_comes_back_once_and_never_blank(worker, code, expect):
    r = worker.run("import matplotlib.pyplot as plt\n" + code)
    assert items(r) == expect, r


def test_a_figure_from_an_earlier_block_of_the_session_shows_as_the_last_value(worker):
    # Before: only the text <Figure size 640x480 with 1 Axes> came back.
    r1 = worker.run("import matplotlib.pyplot as plt\nfig, ax = plt.subplots(); ax.plot([1, 3, 2])", want_state=True)
    assert [i[0] for i in items(r1)] == ["result", "image"]
    r2 = worker.run("ax.set_title('Revenue')\nfig", state=r1["state"], want_state=True)
    assert items(r2) == [("image",)], r2


# --- 6. a session keeps what a kernel keeps ---------------------------------------------------------

def test_module_level_settings_survive_to_the_next_block(worker):
    r1 = worker.run("import pandas as pd, numpy as np, matplotlib.pyplot as plt, warnings, sys, os, random\n"
                    "pd.set_option('display.max_columns', None)\nplt.rcParams['figure.figsize'] = (3, 2)\n"
                    "np.random.seed(0)\nrandom.seed(1)\nnp.set_printoptions(precision=2)\n"
                    "warnings.filterwarnings('ignore', message='shush')\nsys.path.append('/opt/extra')\n"
                    "sys.path.append(os.path.join(os.getcwd(), 'lib'))\nos.environ['MY_SETTING'] = 'on'",
                    want_state=True)
    assert r1["status"] == "completed" and texts(r1, "sandbox") == "", r1
    r2 = worker.run("import pandas as pd, numpy as np, matplotlib.pyplot as plt, warnings, sys, os, random\n"
                    "print(pd.get_option('display.max_columns'), tuple(plt.rcParams['figure.figsize']))\n"
                    "print(np.random.rand(), random.random())\nprint(np.array([1/3]))\n"
                    "warnings.warn('shush')\nprint('/opt/extra' in sys.path, os.path.join(os.getcwd(), 'lib') in sys.path)\n"
                    "print(os.environ.get('MY_SETTING'))", state=r1["state"], want_state=True)
    import numpy as np
    import random
    np.random.seed(0)
    random.seed(1)
    assert texts(r2, "stdout").splitlines() == [
        "None (3.0, 2.0)", f"{np.random.rand()} {random.random()}", "[0.33]", "True True", "on"]
    assert texts(r2, "stderr") == ""  # the warning stayed filtered
    # The stream goes on from where block 2 left it, as in a kernel.
    r3 = worker.run("import numpy as np\nprint(np.random.rand())", state=r2["state"])
    assert texts(r3) == str(np.random.rand())


def test_a_setting_that_cannot_be_kept_is_named(worker):
    r = worker.run("import pandas as pd, threading\nlock = threading.Lock()\n"
                   "pd.set_option('display.float_format', lambda x, l=lock: f'{x:.1f}')\ndel lock\nx = 1",
                   want_state=True)
    assert "pandas option display.float_format" in texts(r, "sandbox"), r
    r2 = worker.run("print(x)", state=r["state"])
    assert texts(r2, "stdout") == "1"


def test_every_random_generator_of_the_stack_is_fresh_per_block(worker):
    # sympy keeps random.Random instances of its own; without a session each block reseeds them.
    outs = [texts(worker.run("from sympy.core.random import rng\nprint(rng.random())")) for _ in range(3)]
    assert len(set(outs)) == 3, outs


# --- without IPython -----------------------------------------------------------------------------

def test_plain_cells_where_ipython_is_missing(fresh_worker):
    """SANDBOX_CELL=plain (also what runs when IPython cannot be imported): the same conventions,
    the richer forms from the object's own _repr_*_ methods, no magics."""
    from conftest import postures
    w = fresh_worker(postures()[-1], SANDBOX_CELL="plain")
    w.settle()
    probe = w.raw({"version": 1, "request_id": "p", "code": "", "action": "probe"})["result"]["zygote"]
    assert probe["cell"] == "plain" and "plain" in probe["cell_note"]
    assert items(w.run("import asyncio\nawait asyncio.sleep(0)\n1 + 1")) == [("result", "2")]
    assert w.run("1;")["outputs"] == []
    r = w.run("class H:\n    def __repr__(self): return 'H'\n    def _repr_html_(self): return '<b>h</b>'\nprint('a')\ndisplay(H())")
    assert r["outputs"] == [{"type": "text", "source": "stdout", "text": "a"},
                            {"type": "text", "source": "result", "text": "H", "mime_bundle": {"text/html": "<b>h</b>"}}]
    r = w.run("import pickle, unittest\nclass P: pass\nprint(type(pickle.loads(pickle.dumps(P()))).__name__)")
    assert texts(r) == "P"
    r = w.run("import matplotlib.pyplot as plt\nfig, ax = plt.subplots(); ax.plot([1, 2]); fig")
    assert items(r) == [("image",)]
    r = w.run("import matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show(); plt.savefig('c.png')")
    assert items(r) == [("image",), ("result", "<Figure size 640x480 with 0 Axes>"), ("file",)]


def test_the_zygote_falls_back_to_plain_cells_when_ipython_cannot_be_imported():
    code = ("import sys\nsys.modules['IPython'] = None\nsys.path.insert(0, sys.argv[1])\n"
            "from sandbox import cell\nimport json\nprint(json.dumps(cell.prepare('ipython')))")
    out = subprocess.run([PYTHON, "-I", "-B", "-c", code, RUNTIME], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": tempfile.gettempdir(), "MPLBACKEND": "Agg"}, timeout=120)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["cell"] == "plain" and "IPython is not available" in info["cell_note"], out
