"""Runner configuration from the environment, validated once at start."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

ALL_LAYERS = ("nondumpable", "subreaper", "clean_env", "close_fds", "rlimits", "no_new_privs",
              "seccomp", "audit_hook", "uid", "netns", "uid_kill", "uid_sweep", "pdeathsig",
              "zygote_nondumpable")
# Required by default in each posture; a required layer that is refused stops start-up (fail
# closed). Layers not required are still attempted, and reported granted or refused.
DEFAULT_REQUIRED = {
    "root": ("nondumpable", "subreaper", "clean_env", "close_fds", "rlimits", "no_new_privs",
             "seccomp", "uid", "netns", "uid_kill", "pdeathsig"),
    "deployed": ("nondumpable", "subreaper", "clean_env", "close_fds", "rlimits", "no_new_privs",
                 "seccomp", "pdeathsig"),
    # Inside AWS Lambda: only what Lambda is known to grant (docs/lambda-environment.md). Its
    # seccomp profile refuses subreaper, pdeathsig, no_new_privs and a nested seccomp filter;
    # nondumpable is unreported either way, so it is attempted and reported, not required.
    "lambda": ("clean_env", "close_fds", "rlimits", "uid_sweep"),
}
POSTURES = tuple(DEFAULT_REQUIRED)

LIMIT_DEFAULTS = {
    "timeout_ms": 30_000,
    "memory_mb": 1024,
    "max_processes": 64,
    "max_file_bytes": 64 << 20,
    "max_open_files": 256,
    "max_output_bytes": 1 << 20,
    "max_files": 20,
    # Large outputs and state parts travel through upload slots, not the 6 MB result.
    "max_files_bytes": 256 << 20,
    "max_state_bytes": 256 << 20,
}
LIMIT_ENV = {
    "timeout_ms": "CODE_TIMEOUT_MS",
    "memory_mb": "SANDBOX_MEMORY_MB",
    "max_processes": "SANDBOX_MAX_PROCESSES",
    "max_file_bytes": "SANDBOX_MAX_FILE_BYTES",
    "max_open_files": "SANDBOX_MAX_OPEN_FILES",
    "max_output_bytes": "SANDBOX_MAX_OUTPUT_BYTES",
    "max_files": "SANDBOX_MAX_FILES",
    "max_files_bytes": "SANDBOX_MAX_FILES_BYTES",
    "max_state_bytes": "SANDBOX_MAX_STATE_BYTES",
}


class ConfigError(ValueError):
    pass


def _int_env(env: dict, name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _standbys(env: dict) -> int:
    value = _int_env(env, "SANDBOX_STANDBYS", 2)
    if value > 6:
        raise ConfigError(f"SANDBOX_STANDBYS must be at most 6 (each worker has 8 uids), got {value}")
    return value


@dataclass(frozen=True)
class Config:
    posture: str
    limits: dict
    required: frozenset
    slot_uid: int | None
    scratch_root: str
    python: str
    wipe_tmp: bool
    single_tenant: bool
    uid_exclusive: bool
    standbys: int
    max_result_bytes: int
    max_input_bytes: int = 1 << 30
    state_cache_bytes: int = 256 << 20
    # A read-only folder holding matplotlib's font cache (fontlist-v*.json), built into the
    # image: each zygote's fresh config dir starts with it instead of scanning the fonts.
    mpl_cache: str | None = None
    # How a block runs (SANDBOX_CELL): "ipython", IPython's cell machinery as in a Jupyter kernel
    # (plain Python cells, with a warning, if IPython cannot be imported), or "plain".
    cell: str = "ipython"
    extra: dict = field(default_factory=dict)

    @staticmethod
    def from_env(env: dict | None = None) -> "Config":
        import sys
        env = dict(os.environ if env is None else env)
        limits = {k: _int_env(env, LIMIT_ENV[k], v) for k, v in LIMIT_DEFAULTS.items()}
        posture = env.get("SANDBOX_POSTURE", "auto")
        if posture not in ("auto", *POSTURES):
            raise ConfigError(f"SANDBOX_POSTURE must be auto, root, deployed or lambda, got {posture!r}")
        if posture == "auto":
            posture = "root" if os.geteuid() == 0 else "deployed"
        if posture == "root" and os.geteuid() != 0:
            raise ConfigError("SANDBOX_POSTURE=root needs the runner to run as root")
        raw_required = env.get("SANDBOX_REQUIRE", "default")
        if raw_required == "default":
            required = frozenset(DEFAULT_REQUIRED[posture])
        else:
            required = frozenset(x.strip() for x in raw_required.split(",") if x.strip())
            unknown = required - set(ALL_LAYERS)
            if unknown:
                raise ConfigError(f"SANDBOX_REQUIRE names unknown layers {sorted(unknown)}; known: {', '.join(ALL_LAYERS)}")
        # Root posture: this worker's blocks run as uids SANDBOX_SLOT_UID .. +SANDBOX_STANDBYS.
        slot_uid = _int_env(env, "SANDBOX_SLOT_UID", 61000) if posture == "root" else None
        if slot_uid is not None and slot_uid == 0:
            raise ConfigError("SANDBOX_SLOT_UID must not be 0")
        scratch = env.get("SANDBOX_SCRATCH_ROOT") or f"/tmp/sandbox-{os.getpid()}"
        cell = env.get("SANDBOX_CELL", "ipython")
        if cell not in ("ipython", "plain"):
            raise ConfigError(f"SANDBOX_CELL must be ipython or plain, got {cell!r}")
        return Config(posture=posture, limits=limits, required=required, slot_uid=slot_uid,
                      scratch_root=scratch, python=env.get("SANDBOX_PYTHON") or sys.executable,
                      wipe_tmp=posture == "lambda" or env.get("SANDBOX_WIPE_TMP") == "1",
                      single_tenant=env.get("SANDBOX_SINGLE_TENANT", "1") == "1",
                      # Inside Lambda the runner is its uid's only tenant, always.
                      uid_exclusive=posture == "lambda" or env.get("SANDBOX_UID_EXCLUSIVE") == "1",
                      standbys=_standbys(env),
                      mpl_cache=env.get("SANDBOX_MPL_CACHE") or None,
                      cell=cell,
                      # Lambda answers at most 6 MB (6,291,456 bytes) synchronously; keep a margin.
                      max_result_bytes=_int_env(env, "SANDBOX_MAX_RESULT_BYTES", 6_000_000, 65_536),
                      max_input_bytes=_int_env(env, "SANDBOX_MAX_INPUT_BYTES", 1 << 30, 0),
                      # Parts of the namespace by SHA-256: a runner serves one tenant, so reuse is safe.
                      state_cache_bytes=_int_env(env, "SANDBOX_STATE_CACHE_MB", 256, 0) << 20)
