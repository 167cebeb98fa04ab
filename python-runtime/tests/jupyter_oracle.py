"""A real Jupyter kernel as the oracle for "a block behaves like a Jupyter cell" (issue 13).

Runs each case's cells in a fresh kernel (jupyter_client's KernelManager with the ipykernel
installed for this interpreter: Debian's python3-ipykernel locally, installed by .ci/run) and turns
its iopub messages into the sandbox's output items, normalized so the two can be compared item by
item:

  ["stdout", text] / ["stderr", text]   consecutive stream text, one trailing newline off
  ["result", text] or ["result", text, {mime: data}]   an execute_result or display_data
  ["image", width, height]               an image/png (a figure): its size, not its pixels
  ["error", name, message]

As a program: `jupyter_oracle.py CASES.json` prints {"normalize": [[pattern, replacement], ...],
"cases": {name: [[items of cell 1], ...]}} or {"skipped": reason} (the HTTP-level conformance test
in test/integration/jupyter-conformance.test.ts uses it).
"""
from __future__ import annotations

import base64
import json
import os
import re
import struct
import sys
import tempfile

RICH = ("text/html", "text/markdown", "text/latex", "image/svg+xml", "application/json")
# Applied to every text on both sides: what differs for reasons that are not the cell's semantics.
NORMALIZE = [
    [r" at 0x[0-9a-f]+", " at 0x?"],                                   # object addresses
    [r"/tmp/ipykernel_\d+/\d+\.py|<cell>", "<cell>"],                   # the cell's file name
    [r"\((?:<cell>|\d+\.py), line (\d+)\)", r"(<cell>, line \1)"],     # in SyntaxError messages
    [r"Ran (\d+) tests? in \d+\.\d+s", r"Ran \1 tests in ?s"],          # unittest's timing
]
_COMPILED = [(re.compile(p), r) for p, r in NORMALIZE]


def norm_text(text: str) -> str:
    for pattern, replacement in _COMPILED:
        text = pattern.sub(replacement, text)
    return text


def png_size(data: bytes) -> list[int]:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return [0, 0]
    return list(struct.unpack(">II", data[16:24]))


def _bundle_items(data: dict) -> list[list]:
    """A display bundle as the sandbox's items: a PNG is an image item; text/plain and the richer
    forms a result item (left out when the bundle is only text and a PNG, as a figure's is)."""
    rich = {k: data[k] for k in RICH if k in data}
    out: list[list] = []
    png = data.get("image/png")
    if png is None or rich:
        item = ["result", norm_text(data.get("text/plain", ""))]
        if rich:
            item.append(rich)
        out.append(item)
    if png is not None:
        raw = base64.b64decode(png) if isinstance(png, str) else png
        out.append(["image", *png_size(raw)])
    return out


def _merge_stream(out: list[list], name: str, text: str) -> None:
    if out and out[-1][0] == name:
        out[-1][1] += text
    else:
        out.append([name, text])


def _finish(out: list[list]) -> list[list]:
    for item in out:
        if item[0] in ("stdout", "stderr"):
            if item[1].endswith("\n"):
                item[1] = item[1][:-1]
            item[1] = norm_text(item[1])
    return [i for i in out if not (i[0] in ("stdout", "stderr") and i[1] == "")]


def sandbox_items(result: dict) -> list[list]:
    """A sandbox result (runner contract) as normalized items; the sandbox's own notices and the
    files a block wrote (a kernel has neither) are left out."""
    out: list[list] = []
    for o in result["outputs"]:
        if o["type"] == "text":
            if o["source"] in ("stdout", "stderr"):
                _merge_stream(out, o["source"], o["text"] + "\n")
            elif o["source"] == "result":
                item = ["result", norm_text(o["text"])]
                if o.get("mime_bundle"):
                    item.append(o["mime_bundle"])
                out.append(item)
        elif o["type"] == "image":
            raw = base64.b64decode(o["data"]) if "data" in o else b""
            out.append(["image", *png_size(raw)])
        elif o["type"] == "error":
            out.append(["error", o["name"], norm_text(o["message"])])
    return _finish(out)


def matches(expected: list, actual: list) -> bool:
    """A pinned expectation may leave out an item's trailing fields (an image's size, an error's
    message)."""
    return len(expected) == len(actual) and all(e == a[: len(e)] for e, a in zip(expected, actual))


class Oracle:
    """One kernel, restarted before each case."""

    def __init__(self):
        from jupyter_client.manager import KernelManager
        self.tmp = tempfile.mkdtemp(prefix="jupyter-oracle-")
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": self.tmp, "IPYTHONDIR": os.path.join(self.tmp, "ipython"),
               "PYDEVD_DISABLE_FILE_VALIDATION": "1", "MPLCONFIGDIR": os.path.join(self.tmp, "mpl")}
        os.environ.update({"JUPYTER_RUNTIME_DIR": self.tmp})
        self.km = KernelManager(kernel_name="python3")
        # The kernel echoes fd-level output to its own stdout: not into ours.
        self.devnull = open(os.devnull, "w")
        self.km.start_kernel(env=env, cwd=self.tmp, stdout=self.devnull, stderr=self.devnull)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.fresh = True

    def _restart(self) -> None:
        if not self.fresh:
            self.km.restart_kernel(now=True)
            self.kc.wait_for_ready(timeout=60)
        self.fresh = False

    def run_cell(self, code: str, timeout: float = 60) -> list[list]:
        msg_id = self.kc.execute(code, allow_stdin=False)
        out: list[list] = []
        while True:
            msg = self.kc.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content["execution_state"] == "idle":
                break
            if kind == "stream":
                _merge_stream(out, content["name"], content["text"])
            elif kind in ("execute_result", "display_data"):
                out.extend(_bundle_items(content["data"]))
            elif kind == "error":
                out.append(["error", content["ename"], norm_text(content["evalue"])])
        self.kc.get_shell_msg(timeout=timeout)
        return _finish(out)

    def run_case(self, cells: list[str]) -> list[list[list]]:
        self._restart()
        return [self.run_cell(code) for code in cells]

    def close(self) -> None:
        try:
            self.kc.stop_channels()
            self.km.shutdown_kernel(now=True)
        finally:
            import shutil
            self.devnull.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


def unavailable() -> str | None:
    """Why no kernel can be started here (None: it can)."""
    try:
        import ipykernel  # noqa: F401
        import jupyter_client  # noqa: F401
    except ImportError as exc:
        return f"{exc}: install python3-ipykernel python3-jupyter-client"
    return None


def load_cases(path: str | None = None) -> list[dict]:
    path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), "jupyter_cases.json")
    with open(path) as f:
        return json.load(f)["cases"]


def main() -> None:
    why = unavailable()
    if why:
        print(json.dumps({"skipped": why}))
        return
    cases = load_cases(sys.argv[1] if len(sys.argv) > 1 else None)
    oracle = Oracle()
    try:
        answers = {case["name"]: oracle.run_case(case["cells"]) for case in cases}
    finally:
        oracle.close()
    print(json.dumps({"normalize": NORMALIZE, "cases": answers}))


if __name__ == "__main__":
    main()
