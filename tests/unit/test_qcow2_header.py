"""The qcow2 header reader agrees with qemu-img on real images, and hands back to it
whatever it can't read."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from vmdesk.storage import images, qcow2_header, qemu_img


def _chain_by_qemu_img(path: Path) -> list[str]:
    return [os.path.realpath(p) for p in images.inspect(path).backing_chain]


def _real(chain: list[str] | None) -> list[str]:
    assert chain is not None
    return [os.path.realpath(p) for p in chain]


def test_chain_of_relative_and_absolute_backing_files_matches_qemu_img(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    raw = tmp_path / "a" / "base.raw"
    images.create(raw, 1 << 20, "raw")
    qemu_img.run(
        ["create", "-f", "qcow2", "-F", "raw", "-b", "../a/base.raw", str(tmp_path / "b" / "mid")],
        what="mid",
    )
    top = tmp_path / "top.qcow2"
    qemu_img.run(
        ["create", "-f", "qcow2", "-F", "qcow2", "-b", str(tmp_path / "b" / "mid"), str(top)],
        what="top",
    )
    expected = _chain_by_qemu_img(top)
    assert len(expected) == 2
    assert _real(qcow2_header.backing_chain(top)) == expected
    assert qcow2_header.backing_chain(raw) == []
    plain = tmp_path / "plain.qcow2"
    images.create(plain, 1 << 20)
    assert qcow2_header.backing_chain(plain) == [] == _chain_by_qemu_img(plain)


def _qcow2_with_name(path: Path, name: bytes, version: int = 3) -> Path:
    header = struct.pack(">4sIQI", b"QFI\xfb", version, 512, len(name))
    path.write_bytes(header.ljust(512, b"\0") + name)
    return path


def test_names_it_cannot_follow_are_left_to_qemu_img(tmp_path: Path) -> None:
    json_name = _qcow2_with_name(tmp_path / "j", b'json:{"file": {"driver": "nbd"}}')
    assert qcow2_header.backing_name(json_name) is False
    assert qcow2_header.backing_chain(json_name) is None
    assert qcow2_header.backing_name(_qcow2_with_name(tmp_path / "v", b"x", 9)) is False
    truncated = tmp_path / "t"
    truncated.write_bytes(b"QFI\xfb\0\0")
    assert qcow2_header.backing_chain(truncated) is None
    short = _qcow2_with_name(tmp_path / "s", b"base")
    short.write_bytes(short.read_bytes()[:-2])  # the name runs past the end of the file
    assert qcow2_header.backing_chain(short) is None


def test_a_loop_is_not_followed_forever(tmp_path: Path) -> None:
    looped = _qcow2_with_name(tmp_path / "loop", b"loop")
    assert qcow2_header.backing_chain(looped) is None
