"""Free space, and the error that says how much an operation needed where."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from vmdesk.core.errors import StorageError
from vmdesk.core.units import human_size


def free_bytes(directory: Path) -> int:
    """Free bytes on the file system that holds ``directory`` (or its nearest parent)."""
    place = directory
    while not place.exists() and place != place.parent:
        place = place.parent
    return shutil.disk_usage(place).free


def allocated_bytes(path: Path) -> int:
    """What the files under ``path`` take on the host (holes not counted)."""
    if path.is_file():
        return os.stat(path).st_blocks * 512
    return sum(os.lstat(p).st_blocks * 512 for p in path.rglob("*") if not p.is_symlink())


def is_out_of_space(exc: BaseException) -> bool:
    """ENOSPC (or EDQUOT), also inside a shutil.Error, which keeps only the message."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = os.strerror(errno.ENOSPC)
    return isinstance(exc, shutil.Error) and any(text in str(why) for *_, why in exc.args[0])


def out_of_space(doing: str, directory: Path, needed: int, free: int) -> StorageError:
    """The error for a file system that filled up; ``directory`` is named as the user knows
    it (not the hidden staging directory the copy was going to)."""
    while any(part.startswith(".") for part in directory.parts) and directory != directory.parent:
        directory = directory.parent
    return StorageError(
        f"{doing} needs {human_size(needed)} at {directory}, and {human_size(free)} "
        "were free there",
        hint="free some space on that disk (or choose another place) and try again; "
        "nothing was changed",
    )


def copy_failed(
    exc: OSError | shutil.Error, source: Path, directory: Path, free: int
) -> StorageError:
    """The error for a copy of ``source`` into ``directory`` that failed with ``exc``:
    how much room it needed when the file system filled up (``free`` was there before),
    else what went wrong."""
    if is_out_of_space(exc):
        return out_of_space(f"copying {source.name}", directory, allocated_bytes(source), free)
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return StorageError(f"copying {source} failed: {why}", hint="check the paths")
