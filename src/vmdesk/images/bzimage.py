"""Unwrap an x86 bzImage to the ELF vmlinux inside it.

Under emulation the bzImage's own decompressor is slow (seconds for Debian's xz kernel);
QEMU can boot the plain ELF through its PVH entry point instead, so we decompress once,
on the host, at image build time.
"""

from __future__ import annotations

import lzma
import struct
import zlib

from vmdesk.core.errors import ImageBuildError

_HEADER_MAGIC = b"HdrS"


def extract_vmlinux(bzimage: bytes) -> bytes:
    """Return the ELF kernel inside ``bzimage`` (xz or gzip payloads)."""
    if len(bzimage) < 0x250 or bzimage[0x202:0x206] != _HEADER_MAGIC:
        raise ImageBuildError("not an x86 bzImage (no HdrS boot header)")
    setup_sects = bzimage[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = bzimage[start : start + payload_length]
    if payload.startswith(b"\xfd7zXZ\x00"):
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    elif payload.startswith(b"\x1f\x8b"):
        # wbits=31: one gzip member; the kernel appends its size after it, not another member.
        elf = zlib.decompressobj(wbits=31).decompress(payload)
    else:
        raise ImageBuildError(
            f"bzImage payload compressed with an unsupported method ({payload[:6].hex()})"
        )
    if not elf.startswith(b"\x7fELF"):
        raise ImageBuildError("the bzImage payload is not an ELF kernel")
    return elf
