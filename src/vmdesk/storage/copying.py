"""Copying disk image files fast: a reflink where the file system can share blocks
(btrfs, XFS, APFS via cp -c), otherwise only the allocated data (holes stay holes)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from vmdesk.core import space

CopyProgress = Callable[[int, int], None]  # bytes done, bytes to do
_FICLONE = 0x40049409  # linux/fs.h: share all of src's blocks with dst
_CHUNK = 8 << 20


def copy(source: Path, target: Path, progress: CopyProgress | None = None) -> str:
    """Copy ``source`` to the new file ``target``; returns "reflink" or "sparse"."""
    free = space.free_bytes(target.parent)
    try:
        return _copy(source, target, progress)
    except OSError as exc:
        raise space.copy_failed(exc, source, target.parent, free) from None


def copy_file(source: str, target: str) -> str:
    """The same copy as shutil.copytree's copy_function: holes stay holes (a sparse raw
    disk stays small), the mode and times are kept, and errors stay OSErrors."""
    _copy(Path(source), Path(target), None)
    shutil.copystat(source, target)
    return target


def _copy(source: Path, target: Path, progress: CopyProgress | None) -> str:
    with open(source, "rb") as src, open(target, "xb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
            return "reflink"
        except OSError:
            pass  # not supported here: copy the data
        _copy_data(src.fileno(), dst.fileno(), progress)
        os.fsync(dst.fileno())
    return "sparse"


def _copy_data(src: int, dst: int, progress: CopyProgress | None) -> None:
    size = os.fstat(src).st_size
    total = os.fstat(src).st_blocks * 512
    done = 0
    offset = 0
    while offset < size:
        try:
            start = os.lseek(src, offset, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole is left
            break
        end = os.lseek(src, start, os.SEEK_HOLE)
        while start < end:
            count = min(_CHUNK, end - start)
            copied = _copy_range(src, dst, start, count)
            start += copied
            done += copied
            if progress is not None:
                progress(min(done, total), total)
        offset = end
    os.ftruncate(dst, size)  # a trailing hole
    if progress is not None:
        progress(total, total)  # st_blocks also counts the file system's own blocks


def _copy_range(src: int, dst: int, offset: int, count: int) -> int:
    if hasattr(os, "copy_file_range"):  # Linux: the kernel copies, no round trip
        with contextlib.suppress(OSError):  # e.g. across file systems on old kernels
            copied = os.copy_file_range(src, dst, count, offset, offset)
            if copied > 0:
                return copied
    data = os.pread(src, count, offset)
    return os.pwrite(dst, data, offset)
