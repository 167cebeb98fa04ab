"""What a kernel keeps between cells besides the namespace: the settings a block makes at module
level. A session's next block is a fresh child of the zygote, so these are carried in its state
(next to the namespace) and put back before its code runs:

- pandas options (`pd.set_option`), matplotlib's rcParams, numpy's print options and `seterr`;
- warning filters (`warnings.filterwarnings`, `simplefilter`);
- `sys.path` (entries under the last block's working directory follow it to the new one);
- environment variables the block set or removed (`os.environ`);
- the state of every module-level random generator the pre-imported stack holds (numpy's global
  RandomState, Python's `random`, sympy's): `np.random.seed(0)` in one block and the next block
  continues that stream, as in a kernel.

Without a session, every generator is reseeded from the OS's entropy in each child (reseed): a
child inherits the zygote's generators, and blocks would otherwise draw the same numbers.

Only differences from the zygote's values are carried. A setting that cannot be serialized, or
that the next block cannot apply, is named in a notice."""
from __future__ import annotations

import os
import random
import sys
import warnings

# Module-level generators of the pre-imported stack, found once in the zygote: (module, attribute).
_generators: list[tuple[str, str]] = []
# The zygote's values (after its imports and set-up), to carry only what a block changed.
_baseline: dict = {}
# Per child, at standby: each generator's state right after reseeding, sys.path, the environment.
_fresh: dict = {}
# Environment variables that are per-block (paths of its own directory): never carried.
_PER_BLOCK_ENV = {"HOME", "TMPDIR", "PWD", "OLDPWD"}


def _np():
    return sys.modules.get("numpy")


def _is_generator(value: object) -> bool:
    if isinstance(value, random.Random):
        return not isinstance(value, random.SystemRandom)
    np = _np()
    return np is not None and isinstance(value, (np.random.RandomState, np.random.Generator))


def find_generators() -> list[tuple[str, str]]:
    """Module-level random generators of every module imported now (call in the zygote)."""
    found = []
    for name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict) or name == "__main__":
            continue
        for attr, value in list(namespace.items()):
            if _is_generator(value):
                found.append((name, attr))
    _generators[:] = sorted(set(found))
    return list(_generators)


def _generator(key: tuple[str, str]):
    module = sys.modules.get(key[0])
    return getattr(module, key[1], None) if module is not None else None


def _get_state(gen) -> object:
    if isinstance(gen, random.Random):
        return gen.getstate()
    if hasattr(gen, "bit_generator"):  # numpy Generator
        return gen.bit_generator.state
    return gen.get_state()


def _set_state(gen, state) -> None:
    if isinstance(gen, random.Random):
        gen.setstate(state)
    elif hasattr(gen, "bit_generator"):
        gen.bit_generator.state = state
    else:
        gen.set_state(state)


def _reseed(gen) -> None:
    if isinstance(gen, random.Random):
        gen.seed()  # from os.urandom
    elif hasattr(gen, "bit_generator"):
        gen.bit_generator.state = type(gen.bit_generator)().state  # a fresh one draws OS entropy
    else:
        gen.seed()


def _pandas_options() -> dict:
    pd = sys.modules.get("pandas")
    if pd is None:
        return {}
    try:
        root = pd._config.config._global_config
    except AttributeError:
        return {}
    flat: dict = {}

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[prefix + k] = v

    walk(root, "")
    return flat


def _rc() -> dict:
    mpl = sys.modules.get("matplotlib")
    if mpl is None:
        return {}
    return {k: v for k, v in dict.items(mpl.rcParams) if k not in ("backend", "backend_fallback")}


def _numpy_settings() -> dict:
    np = _np()
    if np is None:
        return {}
    return {"printoptions": dict(np.get_printoptions()), "err": dict(np.geterr())}


def capture_baseline() -> None:
    """The zygote's settings, after its imports and set-up (call in the zygote, once)."""
    _baseline.clear()
    _baseline.update({"pandas": dict(_pandas_options()), "rc": _rc(), "numpy": _numpy_settings(),
                      "warnings": list(warnings.filters)})


def reseed_and_mark() -> None:
    """In a standby child: every module-level generator reseeded from the OS's entropy, and what
    the block starts with recorded (generator states, sys.path, the environment)."""
    states = {}
    for key in _generators:
        gen = _generator(key)
        if gen is None:
            continue
        try:
            _reseed(gen)
            states[key] = _get_state(gen)
        except Exception:  # a generator a module replaced with something else
            continue
    _fresh.clear()
    _fresh.update({"random": states, "sys_path": list(sys.path), "environ": dict(os.environ)})


def _differs(a: object, b: object) -> bool:
    try:
        return bool(a != b)
    except Exception:  # e.g. arrays compare elementwise
        return True


def collect(cwd: str) -> tuple[dict, list[str]]:
    """The settings this block leaves that differ from a fresh child's: (settings, not kept), the
    second naming what cannot be serialized."""
    import cloudpickle
    out: dict = {}
    base_pd = _baseline.get("pandas", {})
    pd_diff = {k: v for k, v in _pandas_options().items() if k not in base_pd or _differs(v, base_pd[k])}
    if pd_diff:
        out["pandas"] = pd_diff
    base_rc = _baseline.get("rc", {})
    rc_diff = {k: v for k, v in _rc().items() if k not in base_rc or _differs(v, base_rc[k])}
    if rc_diff:
        out["rc"] = rc_diff
    base_np = _baseline.get("numpy", {})
    for group, now in _numpy_settings().items():
        diff = {k: v for k, v in now.items() if _differs(v, base_np.get(group, {}).get(k))}
        if diff:
            out.setdefault("numpy", {})[group] = diff
    if list(warnings.filters) != _baseline.get("warnings"):
        out["warnings"] = list(warnings.filters)
    if sys.path != _fresh.get("sys_path"):
        out["sys_path"] = list(sys.path)
        out["cwd"] = cwd
    env_before = _fresh.get("environ", {})
    env = {k: v for k, v in os.environ.items() if k not in _PER_BLOCK_ENV and env_before.get(k) != v}
    removed = [k for k in env_before if k not in os.environ and k not in _PER_BLOCK_ENV]
    if env or removed:
        out["environ"] = {"set": env, "removed": removed}
    states = {}
    fresh = _fresh.get("random", {})
    for key in _generators:
        gen = _generator(key)
        if gen is None or not _is_generator(gen):
            continue
        try:
            state = _get_state(gen)
        except Exception:
            continue
        # A generator the block did not touch and the session did not seed stays fresh entropy:
        # carrying it would change nothing.
        if key not in fresh or _differs_state(state, fresh[key]):
            states[key] = state
    if states:
        out["random"] = states
    not_kept = []
    for group in list(out):
        try:
            cloudpickle.dumps(out[group], protocol=5)
        except Exception:
            value = out[group]
            if isinstance(value, dict) and group in ("pandas", "rc"):
                for k in list(value):
                    try:
                        cloudpickle.dumps(value[k], protocol=5)
                    except Exception as exc:
                        not_kept.append(f"{'pandas option' if group == 'pandas' else 'rcParams'} {k} ({type(exc).__name__})")
                        del value[k]
            else:
                not_kept.append(f"{group} settings ({type(value).__name__})")
                del out[group]
    return out, not_kept


def _differs_state(a: object, b: object) -> bool:
    np = _np()
    if np is not None and isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        return any(_differs_state(x, y) for x, y in zip(a, b))
    if np is not None and isinstance(a, np.ndarray):
        return not (isinstance(b, np.ndarray) and a.shape == b.shape and bool((a == b).all()))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() != b.keys() or any(_differs_state(a[k], b[k]) for k in a)
    return _differs(a, b)


def apply(settings: dict, cwd: str) -> list[str]:
    """Put a session's settings back (in the child, before the block's code); returns what could
    not be applied, by name."""
    failed = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pd = sys.modules.get("pandas")
        for key, value in (settings.get("pandas") or {}).items():
            try:
                pd.set_option(key, value)
            except Exception as exc:
                failed.append(f"pandas option {key} ({type(exc).__name__})")
        mpl = sys.modules.get("matplotlib")
        rc = settings.get("rc") or {}
        for key, value in rc.items():
            try:
                mpl.rcParams[key] = value
            except Exception as exc:
                failed.append(f"rcParams {key} ({type(exc).__name__})")
        if "interactive" in rc:
            mpl.interactive(bool(rc["interactive"]))
        np = _np()
        numpy_settings = settings.get("numpy") or {}
        try:
            if numpy_settings.get("printoptions"):
                np.set_printoptions(**numpy_settings["printoptions"])
            if numpy_settings.get("err"):
                np.seterr(**numpy_settings["err"])
        except Exception as exc:
            failed.append(f"numpy print options or seterr ({type(exc).__name__})")
    if "warnings" in settings:
        warnings.filters[:] = settings["warnings"]
        mutated = getattr(warnings, "_filters_mutated", None)  # tells the C side (3.11-3.13)
        if mutated is not None:
            mutated()
        else:  # 3.14 and later
            try:
                with warnings._lock:
                    warnings._filters_mutated_lock_held()
            except AttributeError:
                pass
    if "sys_path" in settings:
        old = settings.get("cwd") or ""
        moved = []
        for entry in settings["sys_path"]:
            if old and isinstance(entry, str) and (entry == old or entry.startswith(old + os.sep)):
                entry = cwd + entry[len(old):]
            moved.append(entry)
        sys.path[:] = moved
    env = settings.get("environ") or {}
    for key, value in (env.get("set") or {}).items():
        os.environ[key] = value
    for key in env.get("removed") or ():
        os.environ.pop(key, None)
    for key, state in (settings.get("random") or {}).items():
        gen = _generator(tuple(key))
        if gen is None:
            failed.append(f"the random state of {key[0]}.{key[1]}")
            continue
        try:
            _set_state(gen, state)
        except Exception as exc:
            failed.append(f"the random state of {key[0]}.{key[1]} ({type(exc).__name__})")
    return failed
