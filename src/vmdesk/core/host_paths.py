"""Resolving the host paths a VM names (standard library only: the supervisor rechecks them
before it has imported the config model)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vmdesk.core.errors import VMDeskError


def expand(path: str | Path) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded; a user this host does not know
    is a clear error (pathlib would raise RuntimeError)."""
    text = str(path)
    expanded = os.path.expanduser(text)
    if expanded.startswith("~"):
        user = text[1:].split("/", 1)[0]
        raise VMDeskError(
            f"{text!r}: there is no user {user!r} on this host to expand '~{user}' for",
            hint="write the path out in full",
        )
    return Path(expanded)


def joined(path: str, bundle_dir: Path) -> str:
    """``path`` with '~' expanded and, when relative, made relative to ``bundle_dir``."""
    return str(Path(bundle_dir) / expand(path))


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
