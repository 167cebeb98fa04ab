"""Cold start of one sandbox worker, for `npm run bench` (issue 12).

Usage: cold_start.py N SLOT_UID  (run as root for the root posture; prints one JSON line last)

For each of N rounds and each first block (print(1+1), a pandas groupby): drop the page cache
where this machine allows it (root, /proc/sys/vm/drop_caches writable), start
python-runtime/local_worker.py (the same runner local mode and the Lambda handler use), and
time, from the spawn: the worker's ready line (zygote imported and first standby forked), the
first block's result, and a second block's result (warm); print(1+1) also with the first zygote
starting from a prebuilt font cache (SANDBOX_MPL_CACHE, as the image has), alternating. Also, in a fresh interpreter, the ms
each of the zygote's imports adds, in its order.

Output: {"drop_caches": bool, "rounds": {block: [{"ready_ms", "first_ms", "second_ms"}...]},
"zygote_import_ms": int | null, "imports": [[module, ms], ...], "font_cache_ab": {"fresh_ms":
[...], "prebuilt_ms": [...]} (importing pyplot, alternating), "load": "1m 5m 15m"}.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RUNTIME = os.path.join(os.path.dirname(HERE), "python-runtime")
PYTHON = "/usr/bin/python3"
BLOCKS = {
    "print(1+1)": "print(1+1)",
    "pandas groupby": "import pandas as pd\ndf = pd.DataFrame({'k': ['a','b','a','b'], 'v': [1,2,3,4]})\n"
                      "print(df.groupby('k').v.sum())",
}
# The zygote's imports, in its order (python-runtime/sandbox/zygote.py).
ZYGOTE_IMPORTS = ["matplotlib", "matplotlib.pyplot", "numpy", "pandas", "scipy", "scipy.stats", "sympy",
                  "cloudpickle"]


def drop_caches() -> bool:
    """Write back dirty pages and drop the page cache, dentries and inodes; False if refused."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def _read(proc: subprocess.Popen) -> dict:
    head = proc.stdout.read(4)
    if len(head) < 4:
        raise RuntimeError(f"worker exited: {proc.stderr.read().decode()[-2000:]}")
    (n,) = struct.unpack(">I", head)
    return json.loads(proc.stdout.read(n))


def _run(proc: subprocess.Popen, code: str) -> float:
    """Send one block; ms until its reply (the cleanup's idle line is read after the clock stops)."""
    data = json.dumps({"payload": {"version": 1, "request_id": "bench", "code": code}, "tenant_id": "org_bench"}).encode()
    t0 = time.monotonic()
    proc.stdin.write(struct.pack(">I", len(data)) + data)
    proc.stdin.flush()
    reply = _read(proc)
    ms = (time.monotonic() - t0) * 1000
    if reply.get("result", {}).get("status") != "completed":
        raise RuntimeError(f"block failed: {json.dumps(reply)[:2000]}")
    assert _read(proc) == {"idle": True}
    return ms


def build_font_cache() -> str:
    """matplotlib's font cache built as python-runtime/Dockerfile builds it; the folder's path."""
    folder = tempfile.mkdtemp(prefix="bench-mplcache-")
    subprocess.run([PYTHON, "-I", "-c", "import matplotlib.font_manager"], check=True,
                   env={"PATH": "/usr/bin:/bin", "MPLCONFIGDIR": folder, "HOME": folder})
    os.chmod(folder, 0o755)
    return folder


def one_round(code: str, slot_uid: int, dropped: list[bool], font_cache: str | None = None) -> tuple[dict, dict]:
    dropped.append(drop_caches())
    scratch = tempfile.mkdtemp(prefix="bench-cold-")
    env = {"PATH": "/usr/bin:/bin", "SANDBOX_SCRATCH_ROOT": scratch, "SANDBOX_SLOT_UID": str(slot_uid),
           "SANDBOX_POSTURE": "root" if os.geteuid() == 0 else "deployed"}
    if font_cache:
        env["SANDBOX_MPL_CACHE"] = font_cache
    if os.geteuid() != 0:
        env.update({"SANDBOX_UID_EXCLUSIVE": "1", "SANDBOX_WIPE_TMP": "1"})
    t0 = time.monotonic()
    proc = subprocess.Popen([PYTHON, "-B", os.path.join(RUNTIME, "local_worker.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd="/")
    try:
        hello = _read(proc)
        if "fatal" in hello:
            raise RuntimeError(hello["fatal"])
        ready = (time.monotonic() - t0) * 1000
        first = _run(proc, code)
        second = _run(proc, code)
        return ({"ready_ms": round(ready, 1), "first_ms": round(ready + first, 1), "second_ms": round(second, 1)},
                hello["ready"].get("zygote", {}))
    finally:
        proc.stdin.close()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["rm", "-rf", scratch], check=False)


def import_times() -> list[list]:
    """ms each zygote import adds, in the zygote's order, in a fresh interpreter with a fresh
    matplotlib config dir (as each zygote has, so the font cache is built as it is there). A
    module an earlier one already loaded adds ~0 (numpy comes with matplotlib)."""
    code = ("import json, sys, time\nout = []\nt = time.perf_counter()\nimport matplotlib\n"
            "matplotlib.use('Agg')\nout.append(['matplotlib', time.perf_counter() - t])\n"
            f"for m in {ZYGOTE_IMPORTS[1:]!r}:\n    t = time.perf_counter()\n    __import__(m)\n"
            "    out.append([m, time.perf_counter() - t])\nprint(json.dumps(out))")
    with tempfile.TemporaryDirectory() as mpl:
        out = subprocess.run([PYTHON, "-I", "-c", code], capture_output=True, text=True, check=True,
                             env={"PATH": "/usr/bin:/bin", "MPLCONFIGDIR": mpl, "HOME": mpl, "MPLBACKEND": "Agg",
                                  "OPENBLAS_NUM_THREADS": "1"})
    return [[m, round(s * 1000, 1)] for m, s in json.loads(out.stdout)]


def font_cache_ab(font_cache: str, n: int = 5) -> dict:
    """ms to import matplotlib.pyplot in a fresh interpreter with an empty config dir (the font
    cache is built) and with a copy of the prebuilt cache, alternating n times each."""
    code = ("import time\nt = time.perf_counter()\nimport matplotlib\nmatplotlib.use('Agg')\n"
            "import matplotlib.pyplot\nprint((time.perf_counter() - t) * 1000)")
    out: dict[str, list] = {"fresh_ms": [], "prebuilt_ms": []}
    for _ in range(n):
        for key in out:
            with tempfile.TemporaryDirectory() as mpl:
                if key == "prebuilt_ms":
                    for name in os.listdir(font_cache):
                        shutil.copyfile(os.path.join(font_cache, name), os.path.join(mpl, name))
                run = subprocess.run([PYTHON, "-I", "-c", code], capture_output=True, text=True, check=True,
                                     env={"PATH": "/usr/bin:/bin", "MPLCONFIGDIR": mpl, "HOME": mpl})
                out[key].append(round(float(run.stdout), 1))
    return out


def main() -> None:
    n, slot_uid = int(sys.argv[1]), int(sys.argv[2])
    prebuilt = "print(1+1), prebuilt font cache"
    rounds: dict[str, list] = {name: [] for name in BLOCKS}
    rounds[prebuilt] = []
    dropped: list[bool] = []
    zygote: dict = {}
    font_cache = build_font_cache()
    try:
        for _ in range(n):
            for name, code in BLOCKS.items():
                r, zygote = one_round(code, slot_uid, dropped)
                rounds[name].append(r)
            # A/B, alternating: the first zygote starting from the image's font cache (as in Lambda).
            r, _ = one_round(BLOCKS["print(1+1)"], slot_uid, dropped, font_cache)
            rounds[prebuilt].append(r)
        ab = font_cache_ab(font_cache)
    finally:
        subprocess.run(["rm", "-rf", font_cache], check=False)
    drop_caches()
    imports = import_times()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(json.dumps({"drop_caches": all(dropped), "rounds": rounds, "zygote_import_ms": zygote.get("import_ms"),
                      "imports": imports, "font_cache_ab": ab, "load": load}))


if __name__ == "__main__":
    main()
