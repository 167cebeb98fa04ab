"""A stand-in for S3 and for the API's side of the state, shared by the tests and bench_state.py.

Store answers GETs of objects and records PUTs to upload slots, as presigned S3 URLs would.
next_state turns a result's state into the next payload's, as the API does: inline parts as
data, parts in slots and unchanged ones by URL (known keeps every part seen, by SHA-256).
"""
from __future__ import annotations

import http.server
import threading


class Store(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.objects: dict[str, bytes] = {}
        self.gets: list[str] = []
        self.puts: dict[str, tuple[bytes, dict]] = {}
        self.serial = 0

    def url(self, key: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{key}?X-Amz-Signature=secret-{key}"

    def put_object(self, data: bytes) -> str:
        self.serial += 1
        key = f"obj{self.serial}"
        self.objects[key] = data
        return self.url(key)

    def slots(self, n: int) -> list[str]:
        self.serial += 1
        return [self.url(f"slot{self.serial}-{i}") for i in range(n)]


class Handler(http.server.BaseHTTPRequestHandler):
    server: Store

    def log_message(self, *args):
        pass

    def _key(self) -> str:
        return self.path.split("?")[0].lstrip("/")

    def do_GET(self):
        key = self._key()
        self.server.gets.append(key)
        data = self.server.objects.get(key)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        key = self._key()
        data = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.puts[key] = (data, dict(self.headers))
        self.server.objects[key] = data  # what was PUT can be fetched back (as the API would)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def start_store() -> Store:
    srv = Store()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def next_state(state: dict, uploads: list[str], known: dict[str, dict]) -> dict:
    parts = []
    for p in state["parts"]:
        if "data" in p:
            known[p["sha256"]] = {"data": p["data"]}
        elif "slot" in p:
            known[p["sha256"]] = {"url": uploads[p["slot"]]}
        parts.append({"sha256": p["sha256"], "bytes": p["bytes"], **known[p["sha256"]]})
    return {"parts": parts}
