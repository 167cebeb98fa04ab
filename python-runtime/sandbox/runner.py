"""The runner: the Lambda handler (trusted). One invocation runs one code block.

It owns the credentials of the environment, so it never runs user code and never forks a
process that will: blocks run in children of the zygote, which it starts with execve and a
minimal environment. See docs/security.md and docs/lambda-environment.md.

One block, and the module that does each step:
  standbys.py  the zygote and the standby pool: a child already forked and isolated
  inputs.py    input files placed, saved state restored, the job sent
  collect.py   the child's frames and output read, bounded, until done or the deadline
  outputs.py   what the block produced, within its caps, and the files it wrote
  fit.py       state and media placed inline or in upload slots; the result fit to 6 MB
  reaper.py    every process the block started killed, verified
  cleanup.py   the files it left in the scratch root and /tmp removed
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time

from . import contract, kernel, transfer
from .cleanup import Wiper, make_scratch_root, remove_ipc
from .collect import Block, collect
from .config import Config
from .errors import SandboxError, TenantMismatch
from .fit import fit_result, place_media, place_state
from .layers import LayerRecord
from .inputs import InputFileError, place_inputs, restore_state, send_job
from .outputs import Outputs, collect_files
from .procs import describe_exit, live_pids_of_uid
from .reaper import Reaper
from .standbys import Pool, Standby

__all__ = ["Runner", "SandboxError", "TenantMismatch", "get_runner", "handler", "live_pids_of_uid"]

log = logging.getLogger("sandbox.runner")


class Runner:
    """One warm sandbox environment: execute() runs one block at a time. Raises SandboxError when
    it cannot start (a required isolation layer missing, the zygote failing)."""

    def __init__(self, config: Config):
        self.config = config
        # Each layer is attempted and recorded, never assumed (Lambda refuses several, see
        # docs/lambda-environment.md); _check_required decides once whether this may serve blocks.
        record = LayerRecord()
        self.layers: dict = record.granted
        self.refused: dict = record.refused
        self.tenant: str | None = None
        self.cache = transfer.PartCache(config.state_cache_bytes)
        record.attempt("nondumpable", lambda: kernel.set_dumpable(False), lambda: not kernel.is_dumpable())
        subreaper = record.attempt("subreaper", kernel.set_child_subreaper)
        # Without a subreaper a block's orphans leave the runner's tree: only a scan of every
        # process of the uid finds them, which may kill only where the runner owns the uid.
        self.layers["uid_sweep"] = config.posture != "root" and config.uid_exclusive
        if not subreaper and config.posture != "root" and not config.uid_exclusive:
            raise SandboxError(
                "the subreaper was refused and the uid is shared (SANDBOX_UID_EXCLUSIVE is not 1): a "
                "block's orphans could not be found. Refusing to start (fail closed): "
                + self.refused["subreaper"])
        self.reaper = Reaper(config, zygote=lambda: self.pool.zygote, subreaper=subreaper,
                             asked_for=lambda: self.pool.asked_for())
        self.pool = Pool(config, self.reaper, self.layers, self.refused)
        self.wiper = Wiper(config)
        make_scratch_root(config.scratch_root)
        for uid in self.pool.uids:
            # A runner before this one may have died with a block running: its processes are not
            # in this runner's tree, so look at every process of the uid.
            if not self.reaper.kill_uid(uid, everywhere=True):
                raise SandboxError(f"processes of slot uid {uid} survive and cannot be killed")
        self.reaper.take_baseline()
        self.pool.start_zygote()
        standby = self.pool.take()
        self._check_required(standby)
        self.pool.standbys.appendleft(standby)
        self.pool.fill()

    @property
    def hello(self) -> dict:
        """What the current zygote reported at start (python and package versions, pid)."""
        return self.pool.hello

    def _check_required(self, standby: Standby) -> None:
        """Merge the first standby's layers into the record and stop (SandboxError) if a layer the
        configuration requires (SANDBOX_REQUIRE, or the posture's defaults) is not granted."""
        self.layers.update(standby.layers)
        self.refused.update(standby.refused)
        self.layers["uid_kill"] = self.config.posture == "root"
        self.layers["posture"] = self.config.posture
        missing = sorted(l for l in self.config.required if not self.layers.get(l))
        if missing:
            self.pool.stop_zygote()
            why = "; ".join(f"{l}: {self.refused[l]}" for l in missing if l in self.refused)
            raise SandboxError(
                "isolation layers required by the configuration are not granted here (refused by the kernel or, inside Lambda, its seccomp profile): "
                + ", ".join(missing) + (f" ({why})" if why else "") + ". Refusing to start (fail "
                "closed). Set SANDBOX_REQUIRE to the layers you accept, or run where they are granted.")
        if self.refused:
            log.warning("sandbox layers refused here (not required in the %s posture): %s",
                        self.config.posture, self.refused)
        log.info("sandbox layers: %s", self.layers)

    def close(self) -> None:
        """Stop the zygote and its standbys, reap everything, remove the scratch root."""
        self.pool.stop_zygote()
        self.pool.drop_font_cache()
        for uid in self.pool.uids:
            self.reaper.kill_uid(uid)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.005)
        shutil.rmtree(self.config.scratch_root, ignore_errors=True)

    # --- one block -----------------------------------------------------------------------------

    def bind_tenant(self, tenant: str | None) -> None:
        """With SANDBOX_SINGLE_TENANT: the first tenant seen is the only one served
        (TenantMismatch for another)."""
        if not self.config.single_tenant or tenant is None:
            return
        if self.tenant is None:
            self.tenant = tenant
        elif self.tenant != tenant:
            raise TenantMismatch("this sandbox environment already served another tenant")

    def execute(self, event: object, tenant: str | None = None):
        """Run one block. Returns (result, after): call after() before taking the next block.
        Raises contract.ContractError for a bad payload, SandboxError for an infrastructure
        failure before the block could run."""
        started = time.monotonic()
        payload = contract.validate_payload(event)
        self.bind_tenant(tenant)
        if payload.get("action") == "probe":
            return {"version": 1, "status": "completed", "outputs": [], "layers": self.layers,
                    "refused": self.refused, "zygote": self.hello, "duration_ms": 0}, (lambda: None)
        limits = dict(self.config.limits)
        for key, value in (payload.get("limits") or {}).items():
            if key in limits and 0 < value < limits[key]:
                limits[key] = value
        files = payload.get("files") or []
        want_state = bool(payload.get("want_state"))
        slots = transfer.Slots(payload.get("uploads") or [])
        sb = self.pool.take()
        waited = time.monotonic() - started
        try:
            placed = place_inputs(sb.workdir, sb.uid, files, self.config.max_input_bytes)
        except InputFileError as exc:
            # The code does not run; the standby never saw a job and takes the next block.
            self.pool.give_back(sb)
            total_ms = round((time.monotonic() - started) * 1000, 3)
            return {"version": 1, "status": "failed",
                    "outputs": [{"type": "error", "name": "InputFileError", "message": str(exc), "traceback": ""}],
                    "duration_ms": 0,
                    "timings": {"wait_ms": round(waited * 1000, 3), "run_ms": 0, "total_ms": total_ms}}, (lambda: None)
        except BaseException:
            self.pool.discard(sb)
            raise
        outputs = Outputs(limits)
        block = Block()
        parts = restore_state(payload.get("state"), limits, outputs, self.cache)
        block.allowed = {p["sha256"]: p["bytes"] for p in payload["state"]["parts"]} if parts else {}
        job = {"code": payload["code"], "limits": limits, "want_state": want_state,
               "inputs": [f["name"] for f in files],
               "state": [{"sha256": p["sha256"], "bytes": p["bytes"]} for p in payload["state"]["parts"]] if parts else None,
               # How many new large parts the child may leave out of band (the rest stay in band).
               "state_slots": slots.free()}
        run_started = time.monotonic()
        deadline = run_started + limits["timeout_ms"] / 1000
        try:
            send_job(sb, json.dumps(job).encode(), parts, deadline)
            del parts
            collect(sb, limits, outputs, block, deadline, want_state)
        except BrokenPipeError:
            outputs.error("SandboxError", "the sandbox child ended before it received the code", "")
        except SandboxError as exc:
            outputs.error("SandboxError", str(exc), "")
        run_ms = (time.monotonic() - run_started) * 1000
        killed = not block.done
        if killed:
            # Timed out, crashed, or broke the protocol: stop everything before answering.
            self.reaper.kill_block(sb.pid, sb.uid)
            if block.ended:
                outputs.error("ProcessExit", describe_exit(self.pool.exit_status(sb.pid)), "")
        try:
            collect_files(sb.workdir, sb.uid, outputs, placed)
            result = {
                "version": 1,
                "status": block.status,
                "outputs": outputs.finish(block.child_dropped),
                "output_dropped_bytes": outputs.dropped,
                "duration_ms": round(run_ms, 3),
            }
            if block.done and block.manifest is not None:
                place_state(block, self.config.max_result_bytes, result, slots, self.cache)
            block.parts = []
            place_media(result, outputs, self.config.max_result_bytes, slots)
        finally:
            outputs.close()
        result["timings"] = {"wait_ms": round(waited * 1000, 3), "run_ms": round(run_ms, 3),
                             "total_ms": round((time.monotonic() - started) * 1000, 3)}
        fit_result(result, self.config.max_result_bytes)

        def after() -> None:
            # The replacement forks in the zygote while this process cleans up (the zygote
            # resumed first: a same-uid block may have stopped it).
            self.pool.resume_zygote()
            self.pool.fill()
            if not killed:
                self.reaper.kill_block(sb.pid, sb.uid)
            sb.close()
            self.pool.release_uid(sb.uid)
            self._wipe(sb.pid, sb.uid)
            try:
                if self.pool.zygote_lost():
                    raise SandboxError("the zygote is gone or dying")
                self.pool.fill()
                self.pool.collect_forks(0)
            except SandboxError as exc:
                # e.g. the block killed the zygote (same uid): its standbys go with it now, and
                # a fresh one starts with the next block.
                log.warning("zygote lost (%s); it restarts with the next block", exc)
                self.pool.stop_zygote()

        return result, after

    def _wipe(self, child_pid: int, uid: int | None) -> None:
        """The files the finished block (child_pid, slot uid) left, but none of a standby's."""
        pool = self.pool
        # Standbys being forked are the zygote's children too; the finished block's child may still be.
        waiting = {str(sb.pid) for sb in pool.standbys} | {str(p) for p in self.reaper.zygote_children() - {child_pid}}
        self.wiper.wipe(uid, waiting=waiting, keep={self.config.scratch_root, pool.mpl_dir, pool.font_cache},
                        standby_uids={sb.uid for sb in pool.standbys} | set(pool.pending))
        remove_ipc({os.getuid() if uid is None else uid})
        if uid is None and not pool.config_dir_intact():
            # A same-uid block wrote into the zygote's config folder: a fresh zygote (and folder)
            # for the next block, so nothing it left can reach a later one.
            log.warning("a block changed the zygote's config folder; the zygote restarts")
            pool.stop_zygote()


# --- Lambda entry point ---------------------------------------------------------------------------

_runner: Runner | None = None


def get_runner() -> Runner:
    """The process's one Runner, made from the environment at first use."""
    global _runner
    if _runner is None:
        _runner = Runner(Config.from_env())
    return _runner


def handler(event, context):
    """AWS Lambda handler: one event = one code block."""
    runner = get_runner()
    result, after = runner.execute(event, getattr(context, "tenant_id", None))
    # Inside Lambda nothing may run after we return (the environment can freeze, and a survivor
    # could take the next event from the Runtime API), so clean up first.
    after()
    return result


if os.environ.get("AWS_LAMBDA_RUNTIME_API"):
    logging.basicConfig(level=logging.INFO)
    get_runner()
