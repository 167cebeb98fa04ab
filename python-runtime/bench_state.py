"""Per-block runner time with and without carried state, the Runner in this process.

    /usr/bin/python3 -B bench_state.py [blocks] [--cache-mb N]

(--cache-mb 0 shows the cost without the runner's part cache: every part fetched by URL.)

(a) no state, (b) an empty state carried, (c) a 10 MB numeric DataFrame carried with block code
`x = len(df)`. The state goes back as the API would send it: inline parts as data, parts in an
upload slot or unchanged ones by URL (a local HTTP server plays S3 and counts GETs and PUTs).
"Runner ms" is Runner.execute() (payload in, result out); cleanup (after()) is reported apart.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "tests")]

from sandbox.config import Config  # noqa: E402
from sandbox.runner import Runner  # noqa: E402
from s3_double import Store, next_state, start_store  # noqa: E402


class Session:
    def __init__(self, runner: Runner, store: Store, want_state: bool):
        self.runner, self.store, self.want_state = runner, store, want_state
        self.state = None
        self.known: dict[str, dict] = {}

    def run(self, code: str) -> tuple[dict, float, float]:
        uploads = self.store.slots(4)
        payload = {"version": 1, "request_id": "bench", "code": code, "want_state": self.want_state,
                   "uploads": uploads}
        if self.state is not None:
            payload["state"] = self.state
        t0 = time.perf_counter()
        result, after = self.runner.execute(payload, "org_bench")
        t1 = time.perf_counter()
        after()
        t2 = time.perf_counter()
        if result["status"] != "completed" or any(o["type"] == "error" for o in result["outputs"]):
            raise SystemExit(f"block failed: {result}")
        if "state" in result:
            self.state = next_state(result["state"], uploads, self.known)
        elif self.want_state:
            raise SystemExit(f"no state: {result['outputs']}")
        return result, (t1 - t0) * 1000, (t2 - t1) * 1000


def measure(label: str, session: Session, code: str, n: int) -> None:
    gets, puts = len(session.store.gets), len(session.store.puts)
    runner_ms, after_ms, run_ms = [], [], []
    for _ in range(n):
        result, ms, cleanup = session.run(code)
        runner_ms.append(ms)
        after_ms.append(cleanup)
        run_ms.append(result["timings"]["run_ms"])
    q = statistics.quantiles(runner_ms, n=10)
    print(f"{label:<34} runner ms median {statistics.median(runner_ms):6.1f}  p90 {q[-1]:6.1f}  "
          f"(child run {statistics.median(run_ms):5.1f}, cleanup after reply {statistics.median(after_ms):5.1f})  "
          f"GETs {len(session.store.gets) - gets}, PUTs {len(session.store.puts) - puts}")


def main() -> None:
    args = sys.argv[1:]
    cache_mb = "256"
    if "--cache-mb" in args:
        i = args.index("--cache-mb")
        cache_mb = args[i + 1]
        del args[i:i + 2]
    n = int(args[0]) if args else 30
    store = start_store()
    scratch = tempfile.mkdtemp(prefix="bench-scratch-")
    os.rmdir(scratch)
    runner = Runner(Config.from_env({"SANDBOX_SCRATCH_ROOT": scratch, "SANDBOX_SLOT_UID": "61500",
                                     "SANDBOX_WIPE_TMP": "1", "SANDBOX_STATE_CACHE_MB": cache_mb}))
    try:
        print(f"posture {runner.config.posture}, python {runner.hello.get('python')}, "
              f"pandas {runner.hello.get('pandas')}, part cache {cache_mb} MB, {n} blocks each after warm-up")
        plain = Session(runner, store, want_state=False)
        for _ in range(5):
            plain.run("x = 1")
        measure("(a) no state", plain, "x = len('abc')", n)

        empty = Session(runner, store, want_state=True)
        empty.run("pass")
        for _ in range(5):
            empty.run("pass")
        measure("(b) empty state", empty, "pass", n)

        frame = Session(runner, store, want_state=True)
        _, first, _ = frame.run("import numpy as np, pandas as pd\ndf = pd.DataFrame(np.random.rand(131072, 10))")
        print(f"    creating the 10 MB DataFrame (one new part, PUT): {first:.1f} ms; parts "
              f"{[p['bytes'] for p in frame.state['parts']]}")
        for _ in range(5):
            frame.run("x = len(df)")
        measure("(c) 10 MB DataFrame carried", frame, "x = len(df)", n)
    finally:
        runner.close()
        store.shutdown()


if __name__ == "__main__":
    main()
