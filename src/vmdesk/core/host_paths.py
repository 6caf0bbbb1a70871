"""Resolving the host paths a VM names (standard library only: the supervisor rechecks them
before it has imported the config model)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def joined(path: str, bundle_dir: Path) -> str:
    """``path`` with '~' expanded and, when relative, made relative to ``bundle_dir``."""
    return str(Path(bundle_dir) / Path(path).expanduser())


def resolve(path: str, bundle_dir: Path) -> Path:
    """Absolute, symlinks and '..' resolved (os.path.realpath semantics); relative paths are
    relative to bundle_dir; '~' expanded."""
    # realpath (not Path.resolve(strict=True)) so paths that don't exist yet still resolve.
    return Path(os.path.realpath(joined(path, bundle_dir)))


def is_device(path: Path | str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:  # not there (yet) or unreadable: certainly not a device we'd open
        return False
    return stat.S_ISBLK(mode) or stat.S_ISCHR(mode)
