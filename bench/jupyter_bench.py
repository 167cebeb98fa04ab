"""Warm Jupyter kernel latency (execute -> status idle), for `npm run bench`.

Usage: python3 jupyter_bench.py N WARMUP < blocks.json
stdin: [{"name": ..., "code": ..., "expect": ...}, ...]
stdout: one JSON object {"versions": {...}, "results": {name: [ms, ...]}} or
{"skipped": "..."} when jupyter_client or ipykernel is missing.
"""
import json
import sys
import time


def run_block(kc, code: str) -> tuple[float, str]:
    """Sends one execute request; returns (ms until the kernel reports idle, stdout text)."""
    start = time.perf_counter()
    msg_id = kc.execute(code, store_history=False)
    out = []
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            out.append(content["text"])
        elif kind == "error":
            raise RuntimeError(f"kernel error: {content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            break
    elapsed = (time.perf_counter() - start) * 1000
    reply = kc.get_shell_msg(timeout=30)
    if reply["parent_header"].get("msg_id") != msg_id or reply["content"]["status"] != "ok":
        raise RuntimeError(f"unexpected execute_reply: {reply['content']}")
    return elapsed, "".join(out)


def main() -> None:
    n, warmup = int(sys.argv[1]), int(sys.argv[2])
    blocks = json.load(sys.stdin)
    try:
        import ipykernel
        import jupyter_client
        from jupyter_client.manager import start_new_kernel
    except ImportError as exc:
        print(json.dumps({"skipped": f"{exc}; install python3-ipykernel python3-jupyter-client"}))
        return
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        results = {}
        for block in blocks:
            for i in range(warmup + n):
                elapsed, text = run_block(kc, block["code"])
                if text != block["expect"]:
                    raise RuntimeError(f"{block['name']}: expected {block['expect']!r}, got {text!r}")
                if i >= warmup:
                    results.setdefault(block["name"], []).append(elapsed)
        versions = {"jupyter_client": jupyter_client.__version__, "ipykernel": ipykernel.__version__}
        print(json.dumps({"versions": versions, "results": results}))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


if __name__ == "__main__":
    main()
