"""Per-block cost through a real runner, A/B: two runtime trees side by side, blocks alternated.

Usage (as root; root posture, each worker on its own slot uids):
  /usr/bin/python3 -B tests/bench_cell.py OLD_RUNTIME_DIR NEW_RUNTIME_DIR [N] [CODE]

Each round sends the same block to the old and to the new worker, in turn (which goes first
alternates), and records the client's round trip (request written -> reply read, the cleanup after
the reply excluded) and the runner's own run_ms. Prints medians, p90 and the machine's load.
"""
from __future__ import annotations

import json
import os
import statistics
import struct
import subprocess
import sys
import time


class Worker:
    def __init__(self, runtime: str, slot_uid: int):
        env = {"PATH": "/usr/bin:/bin", "SANDBOX_SCRATCH_ROOT": f"/tmp/sbx-bench-{slot_uid}",
               "SANDBOX_SLOT_UID": str(slot_uid), "SANDBOX_POSTURE": "root"}
        self.proc = subprocess.Popen(["/usr/bin/python3", "-B", os.path.join(runtime, "local_worker.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd="/")
        hello = self._read()
        self.zygote = hello["ready"]["zygote"]

    def _read(self) -> dict:
        (n,) = struct.unpack(">I", self.proc.stdout.read(4))
        return json.loads(self.proc.stdout.read(n))

    def run(self, code: str) -> tuple[float, dict]:
        payload = {"version": 1, "request_id": "b", "code": code}
        if code.startswith("#state"):  # a session's block: the state is saved (and sent back next time)
            payload["want_state"] = True
            if getattr(self, "state", None):
                payload["state"] = self.state
        data = json.dumps({"payload": payload, "tenant_id": "org"}).encode()
        t = time.perf_counter()
        self.proc.stdin.write(struct.pack(">I", len(data)) + data)
        self.proc.stdin.flush()
        reply = self._read()
        ms = (time.perf_counter() - t) * 1000
        assert self._read() == {"idle": True}
        if reply["result"].get("state"):
            self.state = reply["result"]["state"]
        return ms, reply["result"]

    def cpu_ms(self) -> float:
        """CPU time of the runner and of the zygote with its reaped children (the blocks), in ms."""
        total = 0
        for pid in (self.proc.pid, self.zygote["pid"]):
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        return total * 1000 / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(20)


def main() -> None:
    old_dir, new_dir = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    code = sys.argv[4] if len(sys.argv) > 4 else "print(1+1)"
    pause = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0  # seconds between blocks
    load_before = open("/proc/loadavg").read().split()[:3]
    workers = {"old": Worker(old_dir, 64600), "new": Worker(new_dir, 64700)}
    rtt: dict = {k: [] for k in workers}
    run: dict = {k: [] for k in workers}
    wait: dict = {k: [] for k in workers}
    cpu: dict = {}
    try:
        for name, w in workers.items():  # warm: the first blocks fault in the zygote's pages
            for _ in range(5):
                w.run(code)
        cpu0 = {name: w.cpu_ms() for name, w in workers.items()}
        for i in range(n):
            order = ["old", "new"] if i % 2 == 0 else ["new", "old"]
            for name in order:
                time.sleep(pause)
                ms, result = workers[name].run(code)
                assert result["status"] == "completed", result
                rtt[name].append(ms)
                run[name].append(result["timings"]["run_ms"])
                wait[name].append(result["timings"]["wait_ms"])
        time.sleep(1.0)  # the last block's cleanup and standby
        cpu = {name: (w.cpu_ms() - cpu0[name]) / n for name, w in workers.items()}
    finally:
        for w in workers.values():
            w.close()

    def stats(xs: list[float]) -> str:
        xs = sorted(xs)
        return f"median {statistics.median(xs):6.2f}  p90 {xs[int(len(xs) * 0.9) - 1]:6.2f}  min {xs[0]:6.2f}"

    print(f"code {code!r}, {n} rounds, load before {' '.join(load_before)}, after {' '.join(open('/proc/loadavg').read().split()[:3])}")
    for name in workers:
        print(f"{name}: round trip ms {stats(rtt[name])} | run_ms {stats(run[name])} | wait_ms {stats(wait[name])}"
              f" | CPU per block {cpu.get(name, 0):.1f} ms (runner + zygote + blocks)")
        print(f"   zygote {workers[name].zygote}")


if __name__ == "__main__":
    main()
