"""Local mode: one warm sandbox worker speaking length-prefixed JSON over stdin/stdout.

The local Lambda endpoint (functions/local/) runs a pool of these. Each request is
{"payload": <sandbox payload>, "tenant_id": "..."}; each reply is {"result": ...} or
{"error": {"errorType", "errorMessage"}} like a Lambda function error. The reply goes out
first; the block's cleanup and the next standby's fork follow, then {"idle": true} says the
worker may take the next block.
"""
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sandbox import frames  # noqa: E402
from sandbox.config import Config, ConfigError  # noqa: E402
from sandbox.contract import ContractError  # noqa: E402
from sandbox.runner import Runner, SandboxError  # noqa: E402

# A request carries inline files and state parts as base64 (4/3 of their bytes) inside JSON: room
# for 64 MB of them and more. A reply is bounded by SANDBOX_MAX_RESULT_BYTES (6 MB by default).
MAX_REQUEST_BYTES = 256 << 20


def main() -> None:
    logging.basicConfig(level=os.environ.get("SANDBOX_LOG_LEVEL", "WARNING"), stream=sys.stderr,
                        format="sandbox[%(process)d] %(levelname)s %(message)s")
    inp, out = sys.stdin.fileno(), sys.stdout.fileno()
    # Nothing else may write to the reply channel.
    reply_fd = os.dup(out)
    os.dup2(sys.stderr.fileno(), out)
    try:
        runner = Runner(Config.from_env())
    except (ConfigError, SandboxError) as exc:
        frames.write_message(reply_fd, json.dumps({"fatal": str(exc)}).encode())
        sys.exit(78)
    frames.write_message(reply_fd, json.dumps({"ready": {"layers": runner.layers, "refused": runner.refused, "zygote": runner.hello}}).encode())
    while True:
        try:
            request = json.loads(frames.read_message(inp, MAX_REQUEST_BYTES))
        except EOFError:
            runner.close()
            return
        after = None
        try:
            result, after = runner.execute(request.get("payload"), request.get("tenant_id"))
            reply = {"result": result}
        except ContractError as exc:
            reply = {"error": {"errorType": "InvalidPayload", "errorMessage": str(exc)}}
        except SandboxError as exc:
            reply = {"error": {"errorType": type(exc).__name__, "errorMessage": str(exc)}}
        frames.write_message(reply_fd, json.dumps(reply, separators=(",", ":")).encode())
        if after is not None:
            after()
        # Tells the pool this worker may take the next block (cleanup and next standby are done).
        frames.write_message(reply_fd, b'{"idle":true}')


if __name__ == "__main__":
    main()
