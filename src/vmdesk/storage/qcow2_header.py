"""A qcow2 image's backing chain read from the images' own headers.

Deciding which bases a library still uses reads the chain of every disk it holds; asking
``qemu-img info`` costs a process per disk (~15 ms each here), reading the header is a
few bytes. The header (big-endian) starts with the magic, the version, then the offset
and length of the backing file's name. Anything this reader does not understand (a
``json:`` or protocol name, a damaged header) gives None, and the caller asks qemu-img.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

MAGIC = b"QFI\xfb"
_HEADER = struct.Struct(">4sIQI")  # magic, version, backing_file_offset, backing_file_size
_MAX_NAME = 1023  # QEMU's own limit for the backing file's name
_MAX_DEPTH = 64  # a chain deeper than this is a loop (or nothing VM-Desk made)


def backing_name(path: Path) -> str | bool | None:
    """The backing file name written in ``path``'s header: a name, None when it has no
    backing file (or is not qcow2), False when this reader can't tell."""
    try:
        with open(path, "rb") as image:
            head = image.read(_HEADER.size)
            if len(head) < 4 or head[:4] != MAGIC:
                return None  # raw (or anything else): the chain ends here
            if len(head) < _HEADER.size:
                return False
            _, version, offset, size = _HEADER.unpack(head)
            if version not in (2, 3) or size > _MAX_NAME:
                return False
            if offset == 0 or size == 0:
                return None
            image.seek(offset)
            raw = image.read(size)
    except OSError:
        return False
    if len(raw) != size:
        return False
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return False if ":" in name.split("/")[0] else name  # json:, nbd:, file: ... not ours


def backing_chain(path: Path) -> list[str] | None:
    """The files below ``path`` (nearest first, as qemu-img names them: relative names
    resolved against the image that holds them), or None when qemu-img must be asked."""
    chain: list[str] = []
    current = path
    for _ in range(_MAX_DEPTH):
        name = backing_name(current)
        if name is False:
            return None
        if name is None:
            return chain
        assert isinstance(name, str)
        below = Path(name) if os.path.isabs(name) else current.parent / name
        chain.append(str(below))
        current = below
    return None
