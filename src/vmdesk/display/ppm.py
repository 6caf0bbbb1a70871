"""A binary PPM (P6, what QEMU's screendump writes by default, and so libvirt's screenshots)
as a PNG, with the standard library only."""

from __future__ import annotations

import re
import struct
import zlib

from vmdesk.core.errors import EngineError

_HEADER = re.compile(rb"P6\s+(?:#[^\n]*\n\s*)*(\d+)\s+(\d+)\s+(\d+)\s")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def to_png(ppm: bytes) -> bytes:
    match = _HEADER.match(ppm)
    if not match:
        raise EngineError("the screenshot is not a binary PPM image", hint="try again")
    width, height, maxval = (int(g) for g in match.groups())
    pixels = ppm[match.end() :]
    row = width * 3
    if maxval != 255 or len(pixels) < row * height:
        raise EngineError("the screenshot is truncated or not 8-bit", hint="try again")
    # each PNG scanline starts with its filter type (0: none)
    raw = b"".join(b"\x00" + pixels[y * row : (y + 1) * row] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )
