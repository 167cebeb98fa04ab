"""Removing what a block left behind, without following its links."""
from __future__ import annotations

import os
import shutil
import stat
import sys


def _force(func, path, _exc) -> None:
    # A block may have taken the write or search bit off its own directories.
    try:
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
        func(path)
    except OSError:
        pass


def remove(path: str) -> None:
    """Delete a file, a link or a whole directory tree; a link is removed, never followed."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return
    if stat.S_ISDIR(mode):
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=_force)
        else:
            shutil.rmtree(path, onerror=_force)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


def empty(directory: str, keep: set[str] = frozenset()) -> None:
    """Delete everything in a directory but the entries named in keep."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        if entry not in keep:
            remove(os.path.join(directory, entry))
