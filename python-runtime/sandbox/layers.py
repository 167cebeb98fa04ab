"""Isolation layers are applied, then recorded as granted or refused: never assumed.

AWS Lambda's own seccomp profile refuses several process controls with EPERM (see
docs/lambda-environment.md). A refusal is recorded with its reason and the process carries on;
whether the runner may then serve blocks is decided once, against the configured required set
(`Config.required`, from SANDBOX_REQUIRE and the posture's defaults).
"""
from __future__ import annotations

from typing import Callable


class LayerRecord:
    """What one process managed to apply.

    `granted` maps a layer name to True, False, or a value (the uid a child dropped to);
    `refused` maps the name of each refused layer to the error text (e.g. "[Errno 1]
    prctl(38): Operation not permitted")."""

    def __init__(self) -> None:
        self.granted: dict[str, object] = {}
        self.refused: dict[str, str] = {}

    def attempt(self, name: str, apply: Callable[[], object], verify: Callable[[], bool] | None = None) -> bool:
        """Run apply(); the layer is granted if it raises no OSError and verify() (if given) holds.
        Returns whether it was granted. Never raises OSError."""
        try:
            apply()
            ok = verify() if verify is not None else True
            reason = "applied, but it did not take effect"
        except OSError as exc:
            ok, reason = False, str(exc)
        self.granted[name] = ok
        if ok:
            self.refused.pop(name, None)
        else:
            self.refused[name] = reason
        return ok

    def to_json(self) -> dict:
        return {"layers": dict(self.granted), "refused": dict(self.refused)}
