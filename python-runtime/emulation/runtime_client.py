"""Local only: a protocol stand-in for awslambdaric, the Lambda base image's runtime interface client.

Never shipped (the image copies only sandbox/). In AWS Lambda, public.ecr.aws/lambda/python runs
awslambdaric (aws/aws-lambda-python-runtime-interface-client): it imports the handler named by
_HANDLER, then loops on the Runtime API (2018-06-01) at AWS_LAMBDA_RUNTIME_API, calling
handler(event, context) once per invocation. awslambdaric cannot be installed here (no PyPI,
and its C++ part needs a build), so this file speaks the same protocol the same way, with the
standard library alone (Python 3.11+), to the local Runtime API server that each worker of the
`lambda` posture has (functions/local/runtime-api.ts). From the moment an invocation arrives to
its response being posted, the code path is Lambda's: only this client differs, and only in
what the sandbox cannot observe.

What it does as awslambdaric does (bootstrap.py, lambda_context.py, lambda_runtime_client.py,
lambda_runtime_marshaller.py):

- LAMBDA_TASK_ROOT first on sys.path; a handler on the root logger before the handler module is
  imported (so a module's own logging.basicConfig() does nothing, as in Lambda), with the level
  set only by AWS_LAMBDA_LOG_LEVEL;
- init: import the handler module (sandbox.runner starts the runner at import); on a failure
  POST /runtime/init/error {"errorMessage", "errorType", "requestId", "stackTrace"} and exit 1
  (errorType Runtime.ImportModuleError, Runtime.HandlerNotFound, ... or the exception's name);
- loop: GET /runtime/invocation/next without a timeout; a LambdaContext from the
  Lambda-Runtime-* headers (tenant_id from Lambda-Runtime-Aws-Tenant-Id); the event is
  json.loads of the body; the result is JSON-encoded with ", " and ": " separators (simplejson's
  defaults; ensure_ascii off only on the python3.12+ managed runtimes, by AWS_EXECUTION_ENV) and
  POSTed to /runtime/invocation/{id}/response; an exception is POSTed to .../{id}/error with its
  traceback (this file's frames left out);
- one keep-alive connection (awslambdaric reuses one curl handle); a non-2xx answer to a POST
  ends the process with the error, as awslambdaric's standard (not multi-concurrent) client does.

Not reproduced (invisible to the handler): the telemetry log framing (_LAMBDA_TELEMETRY_LOG_FD),
X-Ray error causes, SnapStart hooks, response streaming, multi-concurrency. Every log line goes
to stderr. The error POST carries `Lambda-Runtime-Function-Error-Type: Unhandled` (awslambdaric's
C++ client sends none; the Runtime API then falls back to Runtime.Unknown).
"""
from __future__ import annotations

import http.client
import importlib
import json
import logging
import os
import sys
import time
import traceback

API_VERSION = "/2018-06-01"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
THIS_FILE = os.path.abspath(__file__)
USER_AGENT = "aws-lambda-python/{}.{}.{}-local-stand-in".format(*sys.version_info[:3])


class FaultException(Exception):
    """awslambdaric's error types for what goes wrong around the handler, not inside it."""
    MARSHAL_ERROR = "Runtime.MarshalError"
    UNMARSHAL_ERROR = "Runtime.UnmarshalError"
    USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
    HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
    IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
    BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
    MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
    LAMBDA_CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"

    def __init__(self, exception_type: str, msg: str, trace: list[str] | None = None):
        super().__init__(msg)
        self.exception_type, self.msg, self.trace = exception_type, msg, trace


class RuntimeApiError(Exception):
    def __init__(self, method: str, path: str, status: int, body: bytes):
        super().__init__(f"Request to Lambda Runtime '{method} {path}' failed. Reason: '{status}'. "
                         f"Response body: '{body[:500].decode(errors='replace')}'")


# --- the context ------------------------------------------------------------------------------


class CognitoIdentity:
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]


class Client:
    __slots__ = ["installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name"]


class ClientContext:
    __slots__ = ["custom", "env", "client"]


def _obj_from_dict(cls, values: dict | None):
    if values is None:
        return None
    obj = cls()
    for name in cls.__slots__:
        setattr(obj, name, values.get(name))
    return obj


class LambdaContext:
    """The attributes and methods of awslambdaric's LambdaContext."""

    def __init__(self, invoke_id, client_context, cognito_identity, epoch_deadline_time_in_ms,
                 invoked_function_arn=None, tenant_id=None):
        self.aws_request_id = invoke_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id
        self.client_context = _obj_from_dict(ClientContext, client_context)
        if self.client_context is not None:
            self.client_context.client = _obj_from_dict(Client, self.client_context.client)
        self.identity = _obj_from_dict(CognitoIdentity, {})
        if cognito_identity is not None:
            self.identity.cognito_identity_id = cognito_identity.get("cognitoIdentityId")
            self.identity.cognito_identity_pool_id = cognito_identity.get("cognitoIdentityPoolId")
        self._epoch_deadline_time_in_ms = epoch_deadline_time_in_ms

    def get_remaining_time_in_millis(self) -> int:
        delta = self._epoch_deadline_time_in_ms - int(time.time() * 1000)
        return delta if delta > 0 else 0

    def log(self, msg) -> None:
        sys.stderr.write(str(msg))

    def __repr__(self) -> str:
        return (f"LambdaContext([aws_request_id={self.aws_request_id},log_group_name={self.log_group_name},"
                f"log_stream_name={self.log_stream_name},function_name={self.function_name},"
                f"memory_limit_in_mb={self.memory_limit_in_mb},function_version={self.function_version},"
                f"invoked_function_arn={self.invoked_function_arn},tenant_id={self.tenant_id}])")


# --- the Runtime API --------------------------------------------------------------------------


class RuntimeClient:
    """GET /next and the POSTs over one keep-alive HTTP/1.1 connection."""

    def __init__(self, address: str):
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"AWS_LAMBDA_RUNTIME_API must be host:port, got {address!r}")
        self.host, self.port = host, int(port)
        self.conn: http.client.HTTPConnection | None = None

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        headers = {"User-Agent": USER_AGENT, **(headers or {})}
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
        for attempt in (1, 2):
            reused = self.conn is not None
            if self.conn is None:
                # No timeout: /next blocks until an invocation arrives (AWS: "do not set a timeout").
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=None)
            try:
                self.conn.request(method, API_VERSION + path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                # A kept-alive connection the server had closed: the request was never read. Once.
                if reused and attempt == 1:
                    continue
                raise
            if response.will_close:
                self.conn.close()
                self.conn = None
            return response.status, response.headers, data
        raise AssertionError("unreachable")

    def next(self):
        status, headers, body = self._request("GET", "/runtime/invocation/next")
        if status != 200:
            raise RuntimeApiError("GET", "/runtime/invocation/next", status, body)
        return headers, body

    def _post(self, path: str, body: bytes, headers: dict | None = None) -> None:
        status, _headers, data = self._request("POST", path, body, headers)
        if status != 202:
            raise RuntimeApiError("POST", path, status, data)

    def post_result(self, request_id: str, body: bytes, content_type: str) -> None:
        self._post(f"/runtime/invocation/{request_id}/response", body, {"Content-Type": content_type})

    def post_error(self, request_id: str, error: dict) -> None:
        self._post(f"/runtime/invocation/{request_id}/error", to_json(error).encode(),
                   {ERROR_TYPE_HEADER: "Unhandled"})

    def post_init_error(self, error: dict) -> None:
        error_type = error.get("errorType") or "Unknown"
        if not error_type.startswith(("Runtime.", "Function.")):
            error_type = f"Runtime.{error_type}"
        self._post("/runtime/init/error", to_json(error).encode(), {ERROR_TYPE_HEADER: error_type})


# --- marshalling and errors -------------------------------------------------------------------


def _default(obj):
    import decimal
    if isinstance(obj, decimal.Decimal):
        return float(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def to_json(obj) -> str:
    # simplejson's defaults, as awslambdaric's Encoder: ", " / ": ", NaN allowed; non-ASCII kept
    # as UTF-8 only on the managed python3.12+ runtimes.
    ascii_only = os.environ.get("AWS_EXECUTION_ENV") not in {
        "AWS_Lambda_python3.12", "AWS_Lambda_python3.13", "AWS_Lambda_python3.14", "AWS_Lambda_python3.15"}
    return json.dumps(obj, ensure_ascii=ascii_only, allow_nan=True, default=_default)


def make_error(message, error_type, stack_trace, invoke_id=None) -> dict:
    return {"errorMessage": message or "", "errorType": error_type or "",
            "requestId": invoke_id if invoke_id is not None else "", "stackTrace": stack_trace or []}


def fault_result(exc: BaseException, invoke_id=None) -> dict:
    """The error of an exception, with its traceback from the first frame outside this file."""
    frames = traceback.extract_tb(exc.__traceback__)
    for i, frame in enumerate(frames):
        if os.path.abspath(frame.filename) != THIS_FILE:
            frames = frames[i:]
            break
    return make_error(str(exc), type(exc).__name__, traceback.format_list(frames), invoke_id)


def log_error(error: dict) -> None:
    line = "[ERROR]"
    if error.get("errorType"):
        line += " " + error["errorType"]
    if error.get("errorMessage"):
        line += (":" if error.get("errorType") else "") + " " + error["errorMessage"]
    lines = [line]
    if error.get("stackTrace") is not None:
        lines.append("Traceback (most recent call last):")
        for element in error["stackTrace"]:
            lines.extend(element.splitlines() or [""])
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


def load_handler(name: str):
    try:
        modname, fname = name.rsplit(".", 1)
    except ValueError as exc:
        raise FaultException(FaultException.MALFORMED_HANDLER_NAME, f"Bad handler '{name}': {exc}") from None
    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise FaultException(FaultException.BUILT_IN_MODULE_CONFLICT,
                                 f"Cannot use built-in module {modname} as a handler module")
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as exc:
        raise FaultException(FaultException.IMPORT_MODULE_ERROR,
                             f"Unable to import module '{modname}': {exc}") from None
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise FaultException(FaultException.USER_CODE_SYNTAX_ERROR,
                             f"Syntax error in module '{modname}': {exc}", trace) from None
    try:
        return getattr(module, fname)
    except AttributeError:
        raise FaultException(FaultException.HANDLER_NOT_FOUND,
                             f"Handler '{fname}' missing on module '{modname}'") from None


# --- the loop ---------------------------------------------------------------------------------

_request_id: str | None = None


class _RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _request_id or ""
        return True


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S"))
    handler.formatter.converter = time.gmtime
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    level = (os.environ.get("AWS_LAMBDA_LOG_LEVEL") or "").upper()
    if level in logging._nameToLevel:
        root.setLevel(level)
    root.addHandler(handler)


def _json_header(value: str | None, name: str):
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise FaultException(FaultException.LAMBDA_CONTEXT_UNMARSHAL_ERROR,
                             f"Unable to parse {name} JSON: {exc}") from None


def handle_invocation(client: RuntimeClient, handler, headers, body: bytes) -> None:
    global _request_id
    request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
    if not request_id:
        raise RuntimeError("the Runtime API sent an invocation without Lambda-Runtime-Aws-Request-Id")
    _request_id = request_id
    trace_id = headers.get("Lambda-Runtime-Trace-Id")
    if trace_id is not None:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    error = None
    try:
        deadline = int(headers.get("Lambda-Runtime-Deadline-Ms") or 0)
        context = LambdaContext(request_id,
                                _json_header(headers.get("Lambda-Runtime-Client-Context"), "Client Context"),
                                _json_header(headers.get("Lambda-Runtime-Cognito-Identity"), "Cognito Identity"),
                                deadline, headers.get("Lambda-Runtime-Invoked-Function-Arn"),
                                headers.get("Lambda-Runtime-Aws-Tenant-Id"))
        content_type = headers.get("Content-Type") or "application/json"
        if content_type == "application/json":
            try:
                event = json.loads(body)
            except ValueError as exc:
                raise FaultException(FaultException.UNMARSHAL_ERROR, f"Unable to unmarshal input: {exc}") from None
        else:
            event = body
        response = handler(event, context)
        if isinstance(response, bytes):
            result, result_type = response, "application/unknown"
        else:
            try:
                result, result_type = to_json(response).encode(), "application/json"
            except (TypeError, ValueError) as exc:
                raise FaultException(FaultException.MARSHAL_ERROR, f"Unable to marshal response: {exc}") from None
    except FaultException as exc:
        error = make_error(exc.msg, exc.exception_type, exc.trace, request_id)
    except Exception as exc:  # the handler's own failure: reported, and the loop goes on
        error = fault_result(exc, request_id)
    if error is not None:
        log_error(error)
        client.post_error(request_id, error)
    else:
        client.post_result(request_id, result, result_type)


def main() -> None:
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        sys.stderr.write("runtime_client: AWS_LAMBDA_RUNTIME_API is not set\n")
        sys.exit(1)
    client = RuntimeClient(address)
    handler_name = os.environ.get("_HANDLER") or (sys.argv[1] if len(sys.argv) > 1 else "")
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.path.dirname(os.path.dirname(THIS_FILE))
    sys.path.insert(0, task_root)
    error = None
    try:
        setup_logging()
        handler = load_handler(handler_name)
    except FaultException as exc:
        error = make_error(exc.msg, exc.exception_type, exc.trace)
    except Exception as exc:  # raised while importing the module, e.g. the runner refusing to start
        error = fault_result(exc)
    if error is not None:
        log_error(error)
        client.post_init_error(error)
        sys.exit(1)
    while True:
        headers, body = client.next()
        handle_invocation(client, handler, headers, body)


if __name__ == "__main__":
    main()
