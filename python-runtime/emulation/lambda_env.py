"""Local only: start one sandbox worker inside an emulation of an AWS Lambda environment.

Never shipped (the image copies only sandbox/). Run as root; it builds, as closely as this machine
allows, what the sandbox meets inside Lambda (docs/lambda-environment.md), then execs the
Runtime API client (runtime_client.py beside this file, or SANDBOX_LAMBDA_EXEC) as one non-root uid:

1. private mount and IPC namespaces: every mount read-only except /tmp; /dev rebuilt without
   /dev/shm; System V IPC and POSIX message queues of its own (each Lambda environment is a VM);
   a private network namespace holding only loopback, where 127.0.0.1:9001 is the Runtime API
   and the ports in SANDBOX_LAMBDA_FORWARD_PORTS (the local S3) reach the host, as a VPC whose
   only way out is the S3 gateway endpoint (a root forwarder process carries the bytes);
2. a seccomp filter, installed before the uid drop and inherited by everything after it, that
   answers EPERM to exactly the operations in REFUSED (one row per report, with its source) and
   kills foreign-architecture (compat) system calls;
3. Lambda's environment variables, with planted AWS credentials a block must never see;
4. no process of the uid left from an earlier environment (Lambda starts each one fresh);
5. one non-root uid (SANDBOX_LAMBDA_UID) for the runner and every block.

Environment in: SANDBOX_LAMBDA_UID (required), AWS_LAMBDA_RUNTIME_API (the host's 127.0.0.1:port
of this environment's Runtime API; required for the Runtime API client, which sees 127.0.0.1:9001),
SANDBOX_LAMBDA_FORWARD_PORTS (comma-separated `inside[:outside]` loopback ports reachable from
inside, e.g. the local S3 port the presigned URLs name, served outside by the S3 gate), SANDBOX_LAMBDA_EXEC (another script: the Python tests run the
frame-driven local_worker.py there, without a Runtime API), SANDBOX_* and CODE_TIMEOUT_MS
(passed on). Any failure exits 78 with the reason on stderr:
an emulation that is not what it claims must not run blocks.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
import selectors
import signal
import socket
import stat
import struct
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TASK_ROOT = os.path.dirname(HERE)
sys.path.insert(0, TASK_ROOT)

from sandbox.procs import live_pids_of_uid  # noqa: E402

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

# What Lambda's own seccomp profile refuses with EPERM: (system call, prctl option or None for
# every call, source). Keep in step with the table in docs/lambda-environment.md (a test
# compares them). PR_SET_DUMPABLE has no report either way, so it is not refused here: the
# health endpoint's `layers` must confirm it at the first deploy.
REFUSED = (
    ("prctl", PR_SET_CHILD_SUBREAPER, "github.com/krallin/tini issues 218 and 227"),
    ("prctl", PR_SET_PDEATHSIG, "github.com/chromedp/chromedp issue 562, PR 720; "
     "github.com/hashicorp/terraform-exec issue 172; github.com/ClickHouse/ClickHouse issue 43589"),
    ("prctl", PR_SET_NO_NEW_PRIVS, "github.com/chromedp/chromedp issue 1074; "
     "github.com/magJ/cypress-lambda-example issue 2"),
    ("prctl", PR_SET_SECCOMP, "nested seccomp filter: github.com/openai/codex issue 38779"),
    ("seccomp", None, "nested seccomp filter: github.com/openai/codex issue 38779"),
    ("prctl", PR_SET_NAME, "github.com/catboost/catboost issue 1606"),
)
PRCTL_NAMES = {PR_SET_PDEATHSIG: "PR_SET_PDEATHSIG", PR_SET_NAME: "PR_SET_NAME", PR_SET_SECCOMP: "PR_SET_SECCOMP",
               PR_SET_CHILD_SUBREAPER: "PR_SET_CHILD_SUBREAPER", PR_SET_NO_NEW_PRIVS: "PR_SET_NO_NEW_PRIVS"}

# Planted like Lambda's execution-role credentials: a block that prints one has escaped the
# clean environment.
PLANTED_SECRET = "lambda-planted-SECRET-5e1f0c"

_SYSCALLS = {"x86_64": {"prctl": 157, "seccomp": 317}, "aarch64": {"prctl": 167, "seccomp": 277}}
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
RUNTIME_API_PORT = 9001  # where Lambda serves it, on every environment's loopback
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 32, 4096, 8192, 16384, 1 << 18
_MOUNT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}


class EmulationError(RuntimeError):
    pass


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise EmulationError(f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda v: None if v is None else v.encode()  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def _mount_points() -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) from /proc/self/mountinfo, parents before children."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")
            found.append((point, set(fields[5].split(","))))
    return sorted(found, key=lambda m: m[0].count("/") if m[0] != "/" else 0)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _rebuild_dev() -> None:
    """A fresh read-only /dev with the character devices a program expects and no /dev/shm
    (Lambda has none: multiprocessing's semaphores fail there)."""
    staging = tempfile.mkdtemp(prefix=".lambda-dev-", dir="/tmp")
    _mount("tmpfs", staging, "tmpfs", MS_NOSUID, "mode=755,size=64k")
    for name in ("null", "zero", "full", "random", "urandom", "tty"):
        host = os.stat(f"/dev/{name}")
        os.mknod(os.path.join(staging, name), stat.S_IFCHR | 0o666, host.st_rdev)
        os.chmod(os.path.join(staging, name), 0o666)
    os.symlink("/proc/self/fd", os.path.join(staging, "fd"))
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{fd}", os.path.join(staging, name))
    _mount(staging, "/dev", None, MS_MOVE)
    os.rmdir(staging)


def enter_mount_namespace() -> None:
    """Everything read-only but /tmp (and /proc, as in Lambda); /dev without shm."""
    # Each Lambda environment is its own VM: its own System V IPC and POSIX message queues too.
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC), "unshare(CLONE_NEWNS | CLONE_NEWIPC)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    if not any(point == "/tmp" for point, _ in _mount_points()):
        _mount("/tmp", "/tmp", None, MS_BIND | MS_REC)
    # The task root is read-only in Lambda (/var/task) wherever the local copy lives (often /tmp).
    _mount(TASK_ROOT, TASK_ROOT, None, MS_BIND | MS_REC)
    _mount(None, TASK_ROOT, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    _rebuild_dev()
    for point, options in _mount_points():
        if _under(point, "/tmp") or _under(point, "/proc") or "ro" in options:
            continue
        keep = sum(flag for name, flag in _MOUNT_FLAGS.items() if name in options)
        if not os.path.lexists(point):
            continue  # covered by the new /dev (e.g. the host's /dev/shm): unreachable
        _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)
    probe = os.path.join(TASK_ROOT, f".rw-probe-{os.getpid()}")
    try:
        open(probe, "w").close()
    except OSError as exc:
        if exc.errno != errno.EROFS:
            raise EmulationError(f"the task root is not read-only ({exc})") from None
    else:
        os.unlink(probe)
        raise EmulationError("the task root is still writable after the read-only remount")


def _loopback_up() -> None:
    """ioctl(SIOCSIFFLAGS, IFF_UP) on lo: a new network namespace starts with it down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s.fileno(), 0x8913, req))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sh22x", b"lo", flags | 1))  # SIOCSIFFLAGS


MAX_CONNECTIONS = 64  # per environment; a block that opens more gets them closed at once
_open = threading.BoundedSemaphore(MAX_CONNECTIONS)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(1 << 16):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass


_pairs_lock = threading.Lock()


def _pair(src: socket.socket, dst: socket.socket, left: list[int]) -> None:
    """One direction of a connection; the second of the pair to finish closes both and frees
    the connection's slot."""
    _pump(src, dst)
    with _pairs_lock:
        left[0] -= 1
        last = left[0] == 0
    if last:
        src.close()
        dst.close()
        _open.release()


def _serve_forwards(listeners: dict[socket.socket, int], host_ns: int, life: int) -> None:
    """The forwarder (root, outside the refusal filter): accept inside, dial the host's loopback.
    Sockets keep the namespace they were made in, so after setns every dial is the host's. It
    ends when `life` reads EOF: only the runner holds the other end (the zygote starts with its
    descriptors closed), so the forwarder never outlives the environment's runtime."""
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    _check(_libc.setns(host_ns, CLONE_NEWNET), "setns to the host network")
    sel = selectors.DefaultSelector()
    for sock in listeners:
        sel.register(sock, selectors.EVENT_READ)
    sel.register(life, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj == life:
                os._exit(0)
            try:
                inside, _addr = key.fileobj.accept()
            except OSError:
                time.sleep(0.01)  # e.g. EMFILE: never spin on a listener that stays readable
                continue
            if not _open.acquire(blocking=False):
                inside.close()
                continue
            try:
                outside = socket.create_connection(("127.0.0.1", listeners[key.fileobj]))
            except OSError:
                inside.close()
                _open.release()
                continue
            left = [2]
            for a, b in ((inside, outside), (outside, inside)):
                threading.Thread(target=_pair, args=(a, b, left), daemon=True).start()


def enter_network_namespace(forwards: dict[int, int]) -> None:
    """Loopback only; each forwards[inside port] reaches the host's 127.0.0.1:<port>."""
    host_ns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    _loopback_up()
    listeners = {}
    for inside, outside in forwards.items():
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", inside))
        sock.listen(64)
        listeners[sock] = outside
    if listeners:
        life, keep = os.pipe()
        first = os.fork()
        if first == 0:
            # Twice forked: not the runner's child, so never in the tree its sweeps walk.
            try:
                os.close(keep)
                if os.fork() == 0:
                    _serve_forwards(listeners, host_ns, life)
            finally:
                os._exit(0)
        os.waitpid(first, 0)
        os.close(life)
        os.set_inheritable(keep, True)  # kept across exec by the runner, and by nothing else
    for sock in listeners:
        sock.close()
    os.close(host_ns)


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def build_refusal_filter(arch: str | None = None) -> bytes:
    """BPF: EPERM for each REFUSED row, kill for a foreign architecture, allow the rest."""
    arch = arch or platform.machine()
    if arch not in _SYSCALLS:
        raise EmulationError(f"no Lambda emulation filter for architecture {arch}")
    ld, jeq, ret = 0x20, 0x15, 0x06
    allow, eperm, kill = 0x7FFF0000, 0x00050000 | errno.EPERM, 0x80000000
    options = sorted({opt for call, opt, _ in REFUSED if call == "prctl"})
    whole = sorted({_SYSCALLS[arch][call] for call, opt, _ in REFUSED if opt is None})
    prog = [_insn(ld, 0, 0, 4), _insn(jeq, 1, 0, _AUDIT_ARCH[arch]), _insn(ret, 0, 0, kill), _insn(ld, 0, 0, 0)]
    for nr in whole:
        prog += [_insn(jeq, 0, 1, nr), _insn(ret, 0, 0, eperm)]
    prog.append(_insn(jeq, 1, 0, _SYSCALLS[arch]["prctl"]))
    prog.append(_insn(ret, 0, 0, allow))
    prog.append(_insn(ld, 0, 0, 16))  # args[0], low 32 bits (little-endian)
    for opt in options:
        prog += [_insn(jeq, 0, 1, opt), _insn(ret, 0, 0, eperm)]
    prog.append(_insn(ret, 0, 0, allow))
    return b"".join(prog)


def install_refusals() -> None:
    """As root (CAP_SYS_ADMIN), so no_new_privs is not needed and stays unset, as in Lambda."""
    program = build_refusal_filter()

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(program, len(program))
    fprog = Fprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _check(_libc.prctl(PR_SET_SECCOMP, 2, ctypes.addressof(fprog), 0, 0), "installing the refusal filter")


def kill_uid(uid: int) -> None:
    """Lambda starts each environment fresh: nothing of an earlier worker of this uid survives."""
    for _ in range(100):
        alive = live_pids_of_uid(uid)
        if not alive:
            return
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)
    raise EmulationError(f"processes of uid {uid} survive")


def lambda_environment(given: dict, uid: int) -> dict:
    """Lambda's variables for a container-image function (docs: lambda/latest/dg/
    configuration-envvars.html), planted credentials included, plus the image's ENV."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin/:/bin:/opt/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LAMBDA_TASK_ROOT": TASK_ROOT,
        "LAMBDA_RUNTIME_DIR": HERE,
        "_HANDLER": "sandbox.runner.handler",
        "AWS_LAMBDA_FUNCTION_NAME": "sandbox",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/sandbox",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"local/[$LATEST]{uid}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "ASIAPLANTEDLAMBDAKEY",
        # The caller's own planted values win (the tests search every output for theirs).
        "AWS_SECRET_ACCESS_KEY": given.get("AWS_SECRET_ACCESS_KEY", PLANTED_SECRET),
        "AWS_SESSION_TOKEN": given.get("AWS_SESSION_TOKEN", PLANTED_SECRET),
        # The image's ENV (python-runtime/Dockerfile); one scratch root per local worker.
        "SANDBOX_POSTURE": "lambda",
        "SANDBOX_SCRATCH_ROOT": f"/tmp/sandbox-{uid}",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if given.get("AWS_LAMBDA_RUNTIME_API"):
        env["AWS_LAMBDA_RUNTIME_API"] = given["AWS_LAMBDA_RUNTIME_API"]
    for key, value in given.items():
        if (key.startswith("SANDBOX_") and key not in ("SANDBOX_POSTURE", "SANDBOX_LAMBDA_UID", "SANDBOX_LAMBDA_EXEC")) \
                or key == "CODE_TIMEOUT_MS":
            env[key] = value
    return env


def main() -> None:
    given = dict(os.environ)
    try:
        if os.geteuid() != 0:
            raise EmulationError("the Lambda emulation needs root to build the environment")
        uid = int(given.get("SANDBOX_LAMBDA_UID", "0"))
        if uid <= 0:
            raise EmulationError("SANDBOX_LAMBDA_UID must name a non-root uid")
        target = given.get("SANDBOX_LAMBDA_EXEC") or os.path.join(HERE, "runtime_client.py")
        if "AWS_LAMBDA_RUNTIME_API" not in given and target.endswith("runtime_client.py"):
            raise EmulationError("AWS_LAMBDA_RUNTIME_API is not set")
        kill_uid(uid)
        forwards = {}
        for item in given.get("SANDBOX_LAMBDA_FORWARD_PORTS", "").split(","):
            if item.strip():
                inside, _, outside = item.partition(":")
                forwards[int(inside)] = int(outside or inside)
        if given.get("AWS_LAMBDA_RUNTIME_API"):
            forwards[RUNTIME_API_PORT] = int(given["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)[1])
            given["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{RUNTIME_API_PORT}"
        enter_mount_namespace()
        enter_network_namespace(forwards)
        env = lambda_environment(given, uid)
        install_refusals()
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        os.chdir(TASK_ROOT)
        os.execve(sys.executable, [sys.executable, "-B", target], env)
    except (EmulationError, OSError, ValueError) as exc:
        print(f"lambda emulation: {exc}", file=sys.stderr)
        sys.exit(78)


if __name__ == "__main__":
    main()
