"""The runner's own failures: infrastructure errors, never failures of the user's code.

Apart so that every module of the runner can raise them without importing the runner.
"""
from __future__ import annotations


class SandboxError(RuntimeError):
    """An infrastructure failure (not a failure of the user's code)."""


class TenantMismatch(SandboxError):
    """A single-tenant environment was asked to serve a second tenant."""
