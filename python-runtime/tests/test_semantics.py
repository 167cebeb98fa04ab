"""Notebook-cell semantics, through a real worker."""
import base64

from conftest import errors, texts


def test_print_returns_text(worker):
    r = worker.run("print(1+1)")
    assert r["status"] == "completed"
    assert r["outputs"] == [{"type": "text", "source": "stdout", "text": "2"}]


def test_compound_interest_example(worker):
    code = ("principal = 10000\nrate = 0.07\nyears = 20\n"
            "result = principal * (1 + rate) ** years\nprint(f'${result:,.2f}')")
    r = worker.run(code)
    assert r["outputs"] == [{"type": "text", "source": "stdout", "text": "$38,696.84"}]


def test_final_bare_expression_is_shown(worker):
    r = worker.run("sum(range(10))")
    assert r["outputs"] == [{"type": "text", "source": "result", "text": "45"}]


def test_final_none_shows_nothing_and_assignment_shows_nothing(worker):
    assert worker.run("x = 5")["outputs"] == []
    assert worker.run("None")["outputs"] == []


def test_dataframe_shows_its_text_table(worker):
    r = worker.run("import pandas as pd\ndf = pd.DataFrame({'team': ['a', 'b', 'a'], 'pts': [1, 2, 3]})\n"
                   "df.groupby('team').pts.sum().reset_index()")
    rows = [line.split() for line in texts(r, "result").splitlines()]
    assert rows == [["team", "pts"], ["0", "a", "4"], ["1", "b", "2"]]


def test_stdout_and_stderr_keep_their_order(worker):
    r = worker.run("import sys\nprint('one')\nprint('two', file=sys.stderr)\nprint('three')")
    assert [(o["source"], o["text"]) for o in r["outputs"]] == [
        ("stdout", "one"), ("stderr", "two"), ("stdout", "three")]


def test_exception_gives_failed_with_user_traceback_only(worker):
    r = worker.run("def f(x):\n    return 1 / x\n\nprint('before')\nf(0)")
    assert r["status"] == "failed"
    assert texts(r, "stdout") == "before"
    (err,) = errors(r)
    assert err["name"] == "ZeroDivisionError"
    assert err["message"] == "division by zero"
    assert 'File "<cell>", line 5' in err["traceback"]
    assert "return 1 / x" in err["traceback"]
    assert "sandbox" not in err["traceback"] and "runner" not in err["traceback"]


def test_syntax_error_is_reported_with_its_line(worker):
    r = worker.run("x = 1\nif x\n  print(x)")
    assert r["status"] == "failed"
    (err,) = errors(r)
    assert err["name"] == "SyntaxError"
    assert "line 2" in err["traceback"]


def test_open_figure_comes_back_as_png(worker):
    r = worker.run("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.title('t')\nNone")
    images = [o for o in r["outputs"] if o["type"] == "image"]
    assert len(images) == 1
    assert images[0]["mime_type"] == "image/png"
    assert base64.b64decode(images[0]["data"]).startswith(b"\x89PNG\r\n\x1a\n")


def test_plt_show_keeps_order_with_text(worker):
    r = worker.run("import matplotlib.pyplot as plt\nprint('a')\nplt.plot([1, 2])\nplt.show()\nprint('b')")
    kinds = [o["type"] if o["type"] != "text" else o["text"] for o in r["outputs"]]
    assert kinds == ["a", "image", "b"]


def test_files_written_in_working_directory_come_back(worker):
    r = worker.run("import pandas as pd\npd.DataFrame({'a': [1, 2]}).to_csv('out.csv', index=False)\n"
                   "import os\nos.makedirs('sub', exist_ok=True)\nopen('sub/n.txt', 'w').write('hi')")
    files = {o["filename"]: o for o in r["outputs"] if o["type"] == "file"}
    assert set(files) == {"out.csv", "sub/n.txt"}
    assert base64.b64decode(files["out.csv"]["data"]) == b"a\n1\n2\n"
    assert files["out.csv"]["mime_type"] == "text/csv"
    assert files["sub/n.txt"]["bytes"] == 2


def test_each_block_starts_in_a_fresh_empty_directory(worker):
    worker.run("open('left.txt', 'w').write('x')")
    r = worker.run("import os\nprint(sorted(os.listdir('.')))")
    assert texts(r) == "[]"


def test_scientific_stack_is_available(worker):
    r = worker.run("import numpy, scipy.stats, sympy\n"
                   "print(round(float(scipy.stats.norm.cdf(1.96)), 3), sympy.factor(sympy.Symbol('x')**2 - 1))")
    assert texts(r) == "0.975 (x - 1)*(x + 1)"


def test_sys_exit_zero_is_completed_and_nonzero_is_failed(worker):
    assert worker.run("import sys\nprint('x')\nsys.exit(0)")["status"] == "completed"
    r = worker.run("import sys\nsys.exit(3)")
    assert r["status"] == "failed" and errors(r)[0]["name"] == "SystemExit"


def test_state_carries_variables_functions_and_classes(worker):
    r1 = worker.run("import pandas as pd\nclass P:\n    def __init__(s, v): s.v = v\n"
                    "def double(x): return 2 * x\np = P(21)\ndf = pd.DataFrame({'a': [1, 2]})", want_state=True)
    assert r1["status"] == "completed" and r1.get("state")
    r2 = worker.run("print(double(p.v), int(df.a.sum()))", state=r1["state"], want_state=True)
    assert texts(r2) == "42 3"


def test_unserializable_values_are_dropped_by_name(worker):
    r = worker.run("g = (i for i in range(3))\nkeep = 1", want_state=True)
    notice = texts(r, "sandbox")
    assert "g (generator" in notice
    r2 = worker.run("print(keep, 'g' in globals())", state=r["state"])
    assert texts(r2) == "1 False"


def test_each_block_draws_fresh_random_numbers(worker):
    # Each block is a fresh child of one zygote: numpy's global state must not be inherited as is
    # (it was: three executions printed the same numbers), and neither may Python's.
    for code in ("import numpy as np\nprint(list(np.random.randint(0, 10**9, 3)))",
                 "import pandas as pd\nprint(pd.DataFrame({'a': range(1000)}).sample(3).index.tolist())",
                 "import random\nprint(random.random())"):
        outs = [worker.run(code)["outputs"][0]["text"] for _ in range(3)]
        assert len(set(outs)) == 3, (code, outs)


def test_the_zygote_starts_from_the_images_font_cache(fresh_worker):
    # Built like the image builds it (python-runtime/Dockerfile), then cut to three fonts: a
    # block that sees three fonts proves the zygote used this cache instead of scanning.
    import json
    import os
    import pathlib
    import shutil
    import subprocess
    import tempfile
    from conftest import PYTHON, postures
    # Under /tmp itself: the lambda posture's runner (not root) must read it.
    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="sbx-mplcache-test-", dir="/tmp"))
    build = tmp_path / "build"
    build.mkdir()
    subprocess.run([PYTHON, "-I", "-c", "import matplotlib.font_manager"], check=True,
                   env={"PATH": "/usr/bin:/bin", "MPLCONFIGDIR": str(build), "HOME": str(build)})
    (name,) = [n for n in os.listdir(build) if n.startswith("fontlist-")]
    cache = json.loads((build / name).read_text())
    cache["ttflist"] = cache["ttflist"][:3]
    seeded = tmp_path / "image-cache"
    seeded.mkdir()
    (seeded / name).write_text(json.dumps(cache))
    os.chmod(tmp_path, 0o755)
    os.chmod(seeded, 0o755)
    os.chmod(seeded / name, 0o644)
    try:
        w = fresh_worker(postures()[-1], SANDBOX_MPL_CACHE=str(seeded))
        r = w.run("import matplotlib.font_manager as fm\nprint(len(fm.fontManager.ttflist))")
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
    assert texts(r).strip() == "3", r
