"""The zygote and its standby pool: children forked ahead of time, each waiting (isolated, numpy
and pandas already imported) for one block.

The zygote is started with execve and a minimal environment, never forked from the runner, which
holds the environment's credentials.
"""
from __future__ import annotations

import array
import collections
import fcntl
import hashlib
import json
import logging
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time

from . import frames, paths
from .collect import JSON_FRAME_CAP, FrameReader
from .config import Config
from .errors import SandboxError
from .procs import dying
from .reaper import Reaper, fail_closed

# One logger for all of the runner's modules: its lines read as they always have.
log = logging.getLogger("sandbox.runner")

ZYGOTE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zygote.py")
READY_TIMEOUT_S = 20.0
# Root posture: each worker owns this many consecutive uids from SANDBOX_SLOT_UID.
UIDS_PER_SLOT = 8
ZYGOTE_START_TIMEOUT_S = 120.0
# Pipes to a child hold this much (the default 64 KiB means a syscall per 64 KiB of state).
PIPE_BYTES = 1 << 20


class Standby:
    """One forked child waiting for a block: its pid, slot uid (None: same uid as the runner),
    working directory, and the runner's ends of its job and result pipes and of the pipes that are
    its fd 1 and fd 2 (-1 once closed). layers: the isolation layers it reported in its ready frame."""

    def __init__(self, pid: int, uid: int | None, job_w: int, result_r: int, stdout_r: int, stderr_r: int,
                 workdir: str):
        self.pid, self.uid, self.job_w, self.result_r = pid, uid, job_w, result_r
        self.stdout_r, self.stderr_r = stdout_r, stderr_r
        self.workdir = workdir
        self.layers: dict = {}
        self.refused: dict = {}
        self.ready = False

    def close(self) -> None:
        # Each closed once: a number closed twice may by then be another open file's.
        for name in ("job_w", "result_r", "stdout_r", "stderr_r"):
            fd = getattr(self, name)
            setattr(self, name, -1)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass


_RUNNER_DIR = re.compile(r"^sandbox-(?:mpl|mplcache)-(\d+)-")


def remove_stale_runner_dirs(tmp: str | None = None) -> None:
    """Remove the config and font-cache folders that runners of this uid left in the temporary
    folder when they were killed (no close() ran): each is named after its runner's pid, and is
    removed once no process has that pid."""
    tmp = tmp or tempfile.gettempdir()
    for name in os.listdir(tmp):
        m = _RUNNER_DIR.match(name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        path = os.path.join(tmp, name)
        try:
            if os.lstat(path).st_uid != os.geteuid():
                continue
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def tree_digest(root: str) -> str:
    """SHA-256 over a small folder tree: each entry's path, type, and a file's bytes or a link's
    target. Never follows links."""
    h = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(folder, name)
            st = os.lstat(path)
            h.update(f"{os.path.relpath(path, root)}\0{stat.S_IFMT(st.st_mode)}\0".encode())
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    h.update(f.read())
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(path).encode())
    return h.hexdigest()


class Pool:
    """The zygote process, its control channel, and the standbys it forked.

    layers: the runner's dict of isolation layers (this sets "clean_env"). Failures of the
    zygote or a standby raise SandboxError; take() retries with a fresh zygote before it does."""

    def __init__(self, config: Config, reaper: Reaper, layers: dict, refused: dict):
        self.config = config
        self.reaper = reaper
        self.layers = layers
        self.refused = refused
        self.exits: dict[int, int] = {}
        # Standbys waiting for a block, oldest first, and fork requests the zygote has not answered
        # yet (by uid, in order). As root each holds its own uid from the worker's set, so that
        # cleaning up one block's uid never touches them.
        self.standbys: collections.deque[Standby] = collections.deque()
        self.pending: collections.deque[int | None] = collections.deque()
        # Spare uids let a cleaned uid rest a few blocks before it is verified and reused.
        self.uids: list[int] = ([config.slot_uid + k for k in range(UIDS_PER_SLOT)]
                                if config.posture == "root" and config.slot_uid is not None else [])
        self.free_uids: list[int] = list(self.uids)
        self.zygote: subprocess.Popen | None = None
        self.ctl: socket.socket | None = None
        self.hello: dict = {}
        self.mpl_dir: str | None = None
        self.font_cache: str | None = None  # see _keep_font_cache
        self.config_digest: str | None = None  # see config_dir_intact
        remove_stale_runner_dirs()

    # --- the zygote ------------------------------------------------------------------------------

    def _zygote_config(self) -> dict:
        root = self.config.posture == "root"
        return {
            "scratch_root": self.config.scratch_root,
            "limits": self.config.limits,
            # Every layer is attempted; which are required is the runner's decision (Config.required).
            "layers": {"seccomp": True, "no_new_privs": True, "netns": root, "audit_hook": True},
            # Without a parent-death signal (Lambda refuses it) the zygote checks its parent itself.
            "runner_pid": os.getpid(),
            # How a block runs: "ipython" (IPython's cell machinery, plain if it cannot be imported) or "plain".
            "cell": self.config.cell,
        }

    def start_zygote(self) -> None:
        """(Re)start the zygote and wait for its hello (up to 120 s); SandboxError if none."""
        self.stop_zygote()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # A fresh matplotlib config dir per zygote: nothing a block wrote can shape the next import.
        self.mpl_dir = tempfile.mkdtemp(prefix=f"sandbox-mpl-{os.getpid()}-")
        self._seed_font_cache()
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": self.mpl_dir,
            "MPLCONFIGDIR": self.mpl_dir,
            "MPLBACKEND": "Agg",
            # One thread: the zygote must be single-threaded to fork safely, and children inherit it.
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "NUMEXPR_MAX_THREADS": "1", "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1",
            "SANDBOX_ZYGOTE_FD": str(child.fileno()),
            "SANDBOX_ZYGOTE_CONFIG": json.dumps(self._zygote_config()),
            # IPython's own directory (profile, never a history database: its history is off).
            "IPYTHONDIR": os.path.join(self.mpl_dir, "ipython"),
        }
        self.layers["clean_env"] = True
        self.zygote = subprocess.Popen([self.config.python, "-I", "-B", ZYGOTE], env=env,
                                       pass_fds=[child.fileno()], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, close_fds=True)
        child.close()
        self.ctl = parent
        msg = self.recv_ctl(ZYGOTE_START_TIMEOUT_S, want="hello")
        hello = dict(msg["hello"])
        # The zygote's own layers join the runner's record; hello keeps plain facts (versions, pid).
        self.layers.update(hello.pop("layers", None) or {})
        self.refused.update(hello.pop("refused", None) or {})
        self.hello = hello
        self._keep_font_cache()
        self.config_digest = tree_digest(self.mpl_dir)
        log.info("zygote %d ready: %s", self.zygote.pid, self.hello)
        if self.hello.get("cell") != "ipython" and self.config.cell == "ipython":
            log.warning("blocks run as plain Python cells, not IPython's: %s", self.hello.get("cell_note"))

    def _seed_font_cache(self) -> None:
        """Copy matplotlib's font cache into the fresh config dir, from the folder the image
        built it in (SANDBOX_MPL_CACHE) or, failing that, from the first zygote's own: matplotlib
        then skips scanning the fonts (100s of ms at each zygote start). Only the runner writes
        either source; a cache matplotlib finds stale (another version) it simply rebuilds."""
        source = self.config.mpl_cache or self.font_cache
        if not source:
            return
        try:
            for name in os.listdir(source):
                if name.startswith("fontlist-") and name.endswith(".json"):
                    shutil.copyfile(os.path.join(source, name), os.path.join(self.mpl_dir, name))
        except OSError as exc:
            log.warning("matplotlib's font cache not copied from %s: %s", source, exc)

    def _keep_font_cache(self) -> None:
        """After the first zygote's hello (before any block ran): keep the font cache it built,
        in a folder of the runner's own, for the zygotes started after it."""
        if self.config.mpl_cache or self.font_cache or not self.mpl_dir:
            return
        names = [n for n in os.listdir(self.mpl_dir) if n.startswith("fontlist-") and n.endswith(".json")]
        if names:
            keep = tempfile.mkdtemp(prefix=f"sandbox-mplcache-{os.getpid()}-")
            for name in names:
                shutil.copyfile(os.path.join(self.mpl_dir, name), os.path.join(keep, name))
            self.font_cache = keep

    def config_dir_intact(self) -> bool:
        """False when the zygote's config folder (matplotlib's and IPython's) differs from what it
        held at the zygote's hello. Same-uid blocks can write there; what they wrote must not
        reach a later block (see Runner._wipe)."""
        return self.mpl_dir is None or tree_digest(self.mpl_dir) == self.config_digest

    def drop_font_cache(self) -> None:
        """Remove the font cache kept by _keep_font_cache (at the runner's close)."""
        if self.font_cache:
            shutil.rmtree(self.font_cache, ignore_errors=True)
            self.font_cache = None

    def stop_zygote(self) -> None:
        """Discard every standby, kill the zygote, and kill whatever still holds a slot uid."""
        while self.standbys:
            self.discard(self.standbys.popleft())
        self.pending.clear()
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None
        if self.zygote is not None:
            try:
                self.zygote.kill()
                self.zygote.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self.zygote = None
        if self.mpl_dir:
            shutil.rmtree(self.mpl_dir, ignore_errors=True)
            self.mpl_dir = None
        # Forks that were requested but never reported may still hold their uids.
        for uid in self.uids:
            if uid not in self.free_uids:
                self.reaper.kill_uid(uid)
        self.free_uids = list(self.uids)
        if not self.uids and not self.reaper.sweep_same_uid(None):
            # One uid for all: such forks, and anything else of the zygote's, are found by a sweep.
            fail_closed("processes of the zygote survived its stop; exiting so the environment is discarded")

    def zygote_alive(self) -> bool:
        return self.zygote is not None and self.zygote.poll() is None and self.ctl is not None

    def zygote_lost(self) -> bool:
        """True when a zygote was started and is now gone or dying (a same-uid block can kill it;
        its exit may take a while): its standbys must go with it (stop_zygote)."""
        return self.zygote is not None and (not self.zygote_alive() or dying(self.zygote.pid))

    def resume_zygote(self) -> None:
        """SIGCONT to the zygote: a same-uid block may have stopped it, and a stopped zygote
        would leave fork requests unanswered until READY_TIMEOUT_S."""
        if self.zygote_alive():
            try:
                os.kill(self.zygote.pid, signal.SIGCONT)
            except OSError:
                pass

    def asked_for(self) -> set[int]:
        """Pids of the standbys this runner asked the zygote for: those waiting, after reading
        the answers to pending fork requests (up to READY_TIMEOUT_S each). Any other child of
        the zygote was not forked on request (a block's clone(CLONE_PARENT) makes one)."""
        if self.pending and self.zygote_alive():
            self.resume_zygote()
            try:
                self.collect_forks(READY_TIMEOUT_S)
            except SandboxError:
                pass  # the zygote is gone: unanswered forks are nobody's to spare
        return {sb.pid for sb in self.standbys}

    def recv_ctl(self, timeout: float, want: str) -> dict:
        """Read control messages until one carrying `want`; record child exits on the way.
        timeout in seconds; SandboxError if it passes, or the channel fails or closes."""
        deadline = time.monotonic() + timeout
        assert self.ctl is not None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxError(f"zygote did not answer ({want}) within {timeout:.0f} s")
            ready, _, _ = select.select([self.ctl], [], [], remaining)
            if not ready:
                continue
            try:
                data, ancdata, _flags, _addr = self.ctl.recvmsg(4096, socket.CMSG_SPACE(4 * 4))
            except OSError as exc:
                raise SandboxError(f"zygote channel failed: {exc}") from exc
            if not data:
                raise SandboxError("zygote exited (see its stderr above)")
            msg = json.loads(data)
            fds = array.array("i")
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
            if "exit" in msg:
                self.exits[int(msg["exit"])] = int(msg["status"])
                if len(self.exits) > 256:
                    self.exits.pop(next(iter(self.exits)))
            if "pid" in msg:
                if len(fds) != 4 or not self.pending:
                    for fd in fds:
                        os.close(fd)
                    raise SandboxError("zygote sent a standby that was not asked for, or without its pipes")
                pid = int(msg["pid"])
                sb = Standby(pid, self.pending.popleft(), *fds,
                             workdir=os.path.join(self.config.scratch_root, str(pid)))
                for fd in (sb.job_w, sb.result_r):
                    try:
                        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
                    except OSError:
                        pass  # e.g. over the user's pipe quota: only slower
                self.standbys.append(sb)
            else:
                for fd in fds:
                    os.close(fd)
            if want in msg:
                return msg

    def exit_status(self, pid: int) -> int | None:
        """The wait status the zygote reported for its child pid (waiting up to 0.5 s for it),
        or None."""
        deadline = time.monotonic() + 0.5
        while pid not in self.exits and time.monotonic() < deadline:
            try:
                self.recv_ctl(max(0.01, deadline - time.monotonic()), want="exit")
            except SandboxError:
                break
        return self.exits.pop(pid, None)

    # --- standbys --------------------------------------------------------------------------------

    def fill(self) -> None:
        """Ask the zygote for standbys until the configured number is ready or on its way."""
        while self.zygote_alive() and len(self.standbys) + len(self.pending) < self.config.standbys:
            if self.uids and not self.free_uids:
                return
            uid = None
            if self.uids:
                clean = [u for u in self.free_uids if u not in self.reaper.dirty_uids]
                uid = (clean or self.free_uids)[0]
                self.free_uids.remove(uid)
            if uid is not None:
                self.reaper.verify_clean(uid)
            try:
                self.ctl.send(json.dumps({"fork": uid}).encode())
            except OSError:
                if uid is not None:
                    self.free_uids.append(uid)
                return
            self.pending.append(uid)

    def collect_forks(self, timeout: float) -> None:
        """Turn answered fork requests into standbys (waits up to timeout seconds for the first)."""
        while self.pending:
            if not select.select([self.ctl], [], [], timeout)[0]:
                return
            self.recv_ctl(READY_TIMEOUT_S, want="pid")
            timeout = 0

    def discard(self, sb: Standby) -> None:
        """Kill a standby (or a finished block's child), free its uid and remove its directory."""
        sb.close()
        try:
            os.kill(sb.pid, signal.SIGKILL)
        except OSError:
            pass
        if sb.uid is not None:
            self.reaper.kill_uid(sb.uid)
            self.free_uids.append(sb.uid)
        paths.remove(sb.workdir)

    def give_back(self, sb: Standby) -> None:
        """A standby that never saw a job: its directory emptied, it takes the next block."""
        paths.empty(sb.workdir)
        self.standbys.appendleft(sb)

    def release_uid(self, uid: int | None) -> None:
        """A finished block's slot uid may hold a standby again (verified first, see Reaper)."""
        if uid is not None:
            self.free_uids.append(uid)

    def take(self) -> Standby:
        """A ready standby, oldest first; restarts the zygote (up to 3 tries) if it fails.
        SandboxError if no child could be started."""
        for attempt in range(3):
            try:
                if not self.zygote_alive():
                    self.start_zygote()
                if not self.standbys:
                    self.fill()
                    self.collect_forks(READY_TIMEOUT_S)
                else:
                    self.collect_forks(0)
                if not self.standbys:
                    raise SandboxError("no standby child was forked")
                sb = self.standbys.popleft()
                try:
                    if not sb.ready:
                        self._await_ready(sb)
                    if sb.uid is None:
                        # A same-uid block could have stopped it; a dead one shows up as EOF/EPIPE.
                        os.kill(sb.pid, signal.SIGCONT)
                except (SandboxError, OSError) as exc:
                    log.warning("standby %d unusable (%s); discarding it", sb.pid, exc)
                    self.discard(sb)
                    continue
                return sb
            except (SandboxError, OSError) as exc:
                log.warning("standby failed (%s); restarting the zygote", exc)
                self.stop_zygote()
                if attempt == 2:
                    raise SandboxError(f"no sandbox child could be started: {exc}") from exc
        raise SandboxError("no sandbox child could be started")

    def _await_ready(self, sb: Standby) -> None:
        reader = FrameReader({frames.READY: JSON_FRAME_CAP})
        deadline = time.monotonic() + READY_TIMEOUT_S
        stderr = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxError("standby child did not become ready")
            ready, _, _ = select.select([sb.result_r, sb.stderr_r], [], [], remaining)
            if sb.stderr_r in ready:
                stderr += os.read(sb.stderr_r, 4096)
            if sb.result_r in ready:
                data = os.read(sb.result_r, 65536)
                if not data:
                    raise SandboxError("standby child died during set-up: " + stderr.decode(errors="replace")[-2000:])
                for _kind, payload in reader.feed(data):
                    ready = json.loads(payload)
                    sb.layers = ready["layers"]
                    sb.refused = ready.get("refused") or {}
                    sb.ready = True
                    return
