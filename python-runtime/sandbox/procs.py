"""Reading processes from /proc: status fields, start times, a uid's processes, a process tree,
and how a process ended. Reads only: nothing here signals a process (see reaper.py)."""
from __future__ import annotations

import os
import signal


def proc_status(pid: str) -> dict | None:
    """/proc/<pid>/status as {field: value} (values stripped strings), or None if it cannot be read
    (the process is gone, or not ours to read)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/<pid>/stat, in clock ticks since boot, as the
    string read), or None if it is gone. With the pid it names one process: pids are reused."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


_PF_EXITING = 0x4  # include/linux/sched.h
_SIGKILL_BIT = 1 << 8  # signal 9 in the SigPnd/ShdPnd masks


def dying(pid: int) -> bool:
    """True when the process can never run user code again: it is exiting (PF_EXITING in the flags
    of /proc/<pid>/stat, field 9) or a SIGKILL is pending for it (a fatal signal ends the whole
    thread group before it returns to user space, and makes its fork fail). A gone process is
    dying too. Tearing down a forked copy of the zygote's memory takes milliseconds: a sweep
    need not wait for it to finish."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            flags = int(f.read().rsplit(")", 1)[1].split()[6])
        if flags & _PF_EXITING:
            return True
        st = proc_status(str(pid))
    except (OSError, IndexError, ValueError):
        return True
    if st is None:
        return True
    return any(int(st.get(mask, "0"), 16) & _SIGKILL_BIT for mask in ("SigPnd", "ShdPnd"))


def scan_uid(uid: int, exclude: set[int] = frozenset()) -> tuple[list[int], int]:
    """One pass over /proc: (pids of the live processes whose real uid is uid, except those in
    exclude; how many of its processes are zombies, exited but not yet reaped)."""
    live, zombies = [], 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        st = proc_status(entry)
        if st is None or int(st.get("Uid", "-1").split()[0]) != uid:
            continue
        state = st.get("State", "")
        if state.startswith("Z"):
            zombies += 1
        elif not state.startswith("X"):
            live.append(int(entry))
    return live, zombies


def zombies_of_uid(uid: int) -> int:
    """How many zombies (exited, not yet reaped) have real uid `uid`."""
    return scan_uid(uid)[1]


def live_pids_of_uid(uid: int, exclude: set[int] = frozenset()) -> list[int]:
    """Processes (not zombies) whose real uid is uid, except the pids in exclude."""
    return scan_uid(uid, exclude)[0]


def children(pid: int) -> set[int]:
    """The direct children of pid (of all its threads); what was read before an error if the
    process goes away meanwhile."""
    kids: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.update(int(k) for k in f.read().split())
    except OSError:
        pass
    return kids


def descendants() -> dict[int, int]:
    """Every live process (not a zombie) below this one, as {pid: real uid}. The runner is a
    subreaper: it inherits every orphan of a block, so a daemon's double fork cannot leave this
    tree while the runner lives."""
    found: set[int] = set()
    todo = [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            for kid in kids:
                if kid not in found:
                    found.add(kid)
                    todo.append(kid)
    alive: dict[int, int] = {}
    for pid in found:
        st = proc_status(str(pid))
        if st is not None and not st.get("State", "").startswith(("Z", "X")):
            alive[pid] = int(st.get("Uid", "-1").split()[0])
    return alive


def describe_exit(status: int | None) -> str:
    """A sentence for the user on how the block's process ended, from its wait status (None: the
    status is not known)."""
    if status is None:
        return "the process ended without a result"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = " (often the memory limit)" if sig == signal.SIGKILL else ""
        return f"the process was killed by {name}{hint}"
    code = os.WEXITSTATUS(status)
    return f"the process exited with status {code} before the block finished (os._exit or a crash)"
