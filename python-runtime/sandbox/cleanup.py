"""What a block leaves behind: the scratch root made safe at start-up, and after each block its
working directory, its entries in /tmp, /var/tmp and /dev/shm, and its System V IPC objects
removed (processes: reaper.py)."""
from __future__ import annotations

import ctypes
import os
import stat
import time

from . import paths
from .config import Config
from .errors import SandboxError

TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


_libc = ctypes.CDLL(None, use_errno=True)
IPC_RMID = 0
# /proc/sysvipc/<kind>: (id column, owner uid column, creator uid column) and how to remove one.
_IPC = {
    "shm": (1, 7, 9, lambda i: _libc.shmctl(i, IPC_RMID, None)),
    "msg": (1, 7, 9, lambda i: _libc.msgctl(i, IPC_RMID, None)),
    "sem": (1, 4, 6, lambda i: _libc.semctl(i, 0, IPC_RMID)),
}


def remove_ipc(uids: set[int]) -> int:
    """Remove every System V shared memory segment, message queue and semaphore set that one of
    `uids` owns or created: they outlive processes, and a segment holds memory no rlimit counts.
    Where seccomp is granted the block cannot make them (kernel._DENY); inside Lambda it can.
    Returns how many were removed. POSIX message queues are not listed here (no mqueue mount)."""
    removed = 0
    for kind, (id_col, uid_col, cuid_col, rmid) in _IPC.items():
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                rows = [line.split() for line in f.readlines()[1:]]
        except OSError:
            continue
        for row in rows:
            try:
                if int(row[uid_col]) in uids or int(row[cuid_col]) in uids:
                    removed += rmid(int(row[id_col])) == 0
            except (IndexError, ValueError):
                continue
    return removed


def make_scratch_root(root: str) -> None:
    """Create the scratch root (mode 0711, owned by this runner), or empty the one a previous
    runner left. Raises SandboxError if the path is not a directory of this runner's uid."""
    os.makedirs(os.path.dirname(root) or "/", exist_ok=True)
    try:
        os.mkdir(root, 0o711)
    except FileExistsError:
        st = os.lstat(root)
        # Someone else's (or a symlinked) directory could redirect our wipes: refuse it.
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise SandboxError(f"scratch root {root} exists and is not a directory owned by this runner")
        paths.empty(root)
    os.chmod(root, 0o711)


class Wiper:
    """Removes what a finished block left where the next block would look. Remembers each temp
    directory's mtime so that an unchanged one is not listed again."""

    def __init__(self, config: Config):
        self.config = config
        self.tmp_mtimes: dict[str, int] = {}

    def wipe(self, uid: int | None, waiting: set[str], keep: set[str | None], standby_uids: set) -> None:
        """After a block of slot uid (None: the runner's own uid, deployed posture):
        empty the scratch root but for the entries named in waiting (pids, as strings, of
        standbys), and remove the uid's entries at the top of /tmp, /var/tmp and /dev/shm but
        for the paths in keep and entries owned by another standby's uid (standby_uids)."""
        # Whatever else a block put in the scratch root (one uid for all, deployed) goes too.
        paths.empty(self.config.scratch_root, keep=waiting)
        # Anything else the block left where the next block (or a restarted zygote) would look.
        for base in TMP_DIRS:
            try:
                # Unchanged since the last look: nothing was added at its top level. File times
                # are coarse (a clock tick), so a directory changed within the last second is
                # always looked at again.
                mtime = os.stat(base).st_mtime_ns
                if self.tmp_mtimes.get(base) == mtime and time.time_ns() - mtime > 1_000_000_000:
                    continue
                entries = os.listdir(base)
            except OSError:
                continue
            for entry in entries:
                full = os.path.join(base, entry)
                if full in keep:
                    continue
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                ours = (uid is not None and st.st_uid == uid) or \
                       (self.config.wipe_tmp and uid is None and st.st_uid == os.getuid())
                if st.st_uid in standby_uids and st.st_uid != uid:
                    ours = False
                if ours:
                    paths.remove(full)
            try:
                self.tmp_mtimes[base] = os.stat(base).st_mtime_ns
            except OSError:
                pass
