"""Crash-safe file replacement: readers see the old file or the new one, never a mix."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

TYPE_CHECKING = False  # not typing's: this module is on the VM start path
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_with(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Replace ``path`` atomically with what ``write`` writes to the open file: temp file
    in the same dir (private to this user), fsync, rename, fsync the dir."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text`` (UTF-8); see :func:`write_with`."""
    data = text.encode("utf-8")

    def write(out: BinaryIO) -> None:
        out.write(data)

    write_with(path, write)
