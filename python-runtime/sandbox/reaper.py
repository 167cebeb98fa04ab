"""Killing a block's leftovers: every process it started, daemons and fork-and-exit hoppers
included, verified dead before its uid (or, same uid, the next block) runs again.

Root posture: each block has its own uid, killed at once with kill(-1) sent as that uid.
Deployed and lambda postures (one uid for runner and blocks): stop-then-kill sweeps of the
runner's subtree, and of every process of the uid when it is the runner's alone (always inside
Lambda, where no subreaper brings orphans back to the runner), until one finds nothing. Either way, what cannot be verified ends the process
(exit 75) so that the environment is discarded (fail closed).
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Callable

from .config import Config
from .procs import children, descendants, dying, live_pids_of_uid, scan_uid, start_time

# One logger for all of the runner's modules: its lines read as they always have.
log = logging.getLogger("sandbox.runner")

FAIL_CLOSED_EXIT = 75
# Without a subreaper a block's orphans are re-parented to PID 1, and until PID 1 reaps them (this
# machine's does so only every few seconds; Lambda's is unreported) they are zombies, which count against the uid's
# process limit (Lambda: 1,024 per environment). Past this many, the environment is discarded.
MAX_ZOMBIES = 256


def fail_closed(message: str, *args) -> None:
    """Log critically and end the process at once (exit 75): an environment that cannot be
    cleaned must not take another block. Never returns."""
    log.critical(message, *args)
    sys.stderr.flush()
    os._exit(FAIL_CLOSED_EXIT)


class Reaper:
    """Kills and reaps the processes of finished blocks.

    zygote: returns the zygote's Popen (or None): it is never swept while alive, and an exited
    zygote reaped here is marked dead. asked_for: returns the pids of the standbys the runner
    asked the zygote for (answers to pending fork requests read first): the only zygote children
    a same-uid sweep spares. dirty_uids: slot uids signalled after a block but
    not yet verified empty; verify_clean() does that before a uid holds a standby again."""

    def __init__(self, config: Config, zygote: Callable[[], subprocess.Popen | None], subreaper: bool = True,
                 asked_for: Callable[[], set[int]] = set):
        self.config = config
        self._zygote = zygote
        # The standbys the runner asked the zygote for: the only zygote children a sweep spares.
        self._asked_for = asked_for
        # Without it (Lambda refuses PR_SET_CHILD_SUBREAPER) orphans are re-parented outside the
        # runner's tree, so every check scans all of the uid's processes instead of the tree.
        self.subreaper = subreaper
        self.dirty_uids: set[int] = set()
        # Same-uid processes that predate every block: (pid, start time).
        self.baseline: set[tuple[int, str | None]] = set()

    def take_baseline(self) -> None:
        """Same-uid processes that predate every block (init, extensions): never swept. Taken once
        at start-up, before the zygote starts."""
        me = os.getpid()
        self.baseline = {(pid, start_time(pid)) for pid in live_pids_of_uid(os.getuid(), {me})}

    def reap_orphans(self) -> None:
        """Collect every exited child (the runner, a subreaper, inherits the blocks' orphans)
        without waiting; a reaped zygote is marked dead for Popen.poll()."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            zygote = self._zygote()
            if zygote is not None and pid == zygote.pid:
                zygote.returncode = -1

    def kill_block(self, pid: int, uid: int | None) -> None:
        """Kill every process the block (child pid, slot uid or None for the same uid) started,
        daemons and hoppers included, and verify; exits the process (75) if it cannot."""
        if uid is not None:
            # Verified before the uid holds a standby again (verify_clean), off the reply path.
            self.signal_uid(uid)
            self.dirty_uids.add(uid)
            ok = True
        else:
            ok = self.sweep_same_uid(pid)
        self.reap_orphans()
        if not ok:
            # Fail closed: an environment we cannot clean must not take another block.
            fail_closed("processes of a block survived cleanup; exiting so the environment is discarded")

    def verify_clean(self, uid: int) -> None:
        """Before a uid that held a block takes a standby: kill and verify that nothing of it is
        left; exits the process (75) if something survives."""
        if uid in self.dirty_uids:
            if not self.kill_uid(uid):
                fail_closed("processes of uid %d survived cleanup; exiting so the environment is discarded", uid)
            self.dirty_uids.discard(uid)

    def signal_uid(self, uid: int) -> None:
        """One kill(-1, SIGKILL) as the uid: every process of the uid at once, and none can fork
        past it (a pending SIGKILL makes fork fail); they finish dying in the background.

        The runner (root) takes the uid as its real and effective uid for the one call, keeping
        0 as its saved uid to come back: with real uid 0 kill(-1) would reach root's processes."""
        os.setresuid(uid, uid, 0)
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.setresuid(0, 0, 0)

    def kill_uid(self, uid: int, everywhere: bool = False) -> bool:
        """Kill every process of the uid and verify that none is left alive; False if some still
        are after 200 tries. As the subreaper the runner inherits every orphan, so the uid's
        processes are all in its subtree: a walk of that tree (a few processes) verifies, instead
        of a scan of all of /proc. everywhere: scan all of /proc (for what a dead runner left)."""
        for attempt in range(200):
            self.reap_orphans()
            alive = live_pids_of_uid(uid) if everywhere or not self.subreaper \
                else [p for p, u in descendants().items() if u == uid]
            if not alive:
                return True
            self.signal_uid(uid)
            if attempt:
                time.sleep(0.001)
        return False

    def zygote_children(self) -> set[int]:
        """The zygote's children: its standbys (being forked or waiting) and a block's child."""
        zygote = self._zygote()
        if zygote is None:
            return set()
        return children(zygote.pid)

    def _protected(self) -> set[int]:
        keep = {os.getpid()}
        zygote = self._zygote()
        # A zygote a block killed may take a while to finish exiting: it is dead already.
        if zygote is not None and zygote.poll() is None and not dying(zygote.pid):
            keep.add(zygote.pid)
        for pid, start in self.baseline:
            if start_time(pid) == start:
                keep.add(pid)
        return keep

    def _sweep_candidates(self, protected: set[int], block_pid: int) -> set[int]:
        victims = set(descendants()) - protected
        # The runner refuses to start with neither (Runner.__init__).
        if self.config.uid_exclusive or not self.subreaper:
            # Inside Lambda this runner is the uid's only tenant: anything unknown of the uid goes.
            victims |= set(live_pids_of_uid(os.getuid(), protected))
        # Spare only the standbys the runner asked for, read after the scan so that one forked
        # meanwhile is never taken for a survivor. Any other child of the zygote was made by a
        # block (clone(CLONE_PARENT) makes its caller's parent the new process's parent).
        return victims - (self._asked_for() - {block_pid})

    def _check_zombies(self, killed: set[int]) -> None:
        """Without a subreaper this block's killed processes become PID 1's zombies. If they (with
        those left before) pass MAX_ZOMBIES, wait up to 3 s for PID 1 to reap them, then exit (75)
        if it has not: this block's invocation fails, not an innocent later one."""
        uid = os.getuid()
        deadline = time.monotonic() + 3.0
        while True:
            live, zombies = scan_uid(uid)  # one pass over /proc per block in the usual case
            if zombies + len(killed.intersection(live)) <= MAX_ZOMBIES:
                return
            if time.monotonic() > deadline:
                fail_closed("more than %d zombies of this uid that PID 1 does not reap; exiting so the "
                            "environment is discarded", MAX_ZOMBIES)
            time.sleep(0.05)

    def sweep_same_uid(self, child_pid: int | None) -> bool:
        """One uid for runner and blocks (deployed, lambda): stop-then-kill until a sweep finds none.
        True when a sweep found nothing left of the block (child_pid, or None after the zygote is
        gone, and what it started)."""
        protected = self._protected()
        killed: set[int] = set()
        if child_pid is not None:
            try:
                os.kill(child_pid, signal.SIGKILL)
            except OSError:
                pass
            killed.add(child_pid)
        child_pid = -1 if child_pid is None else child_pid
        for _ in range(self.config.limits["max_processes"] + 10):
            # One this sweep killed that can never run again counts as gone (its exit may take ms).
            victims = {pid for pid in self._sweep_candidates(protected, child_pid) if pid not in killed or not dying(pid)}
            if not victims:
                if not self.subreaper:
                    self._check_zombies(killed)
                return True
            # Stop first so nothing can fork between our look and our kill.
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGSTOP)
                except OSError:
                    pass
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except OSError:
                    pass
            self.reap_orphans()
            time.sleep(0.0005)
        return not {pid for pid in self._sweep_candidates(protected, child_pid) if pid not in killed or not dying(pid)}
