"""The disks' I/O probes against this host's real file systems and QEMU: O_DIRECT on ext4
and not on ramfs, io_uring as QEMU finds it (and not once the kernel's sysctl turns it
off), and L2 caches that cover a qcow2 disk's virtual size."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import io_uring_disabled
from vmdesk.core.config import Disk
from vmdesk.core.errors import EngineError
from vmdesk.engines.qemu import disk_io

QEMU = Path(shutil.which("qemu-system-x86_64") or "qemu-system-x86_64")


def _qcow2(path: Path, size: str, *options: str) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *options, str(path), size],
                   check=True)  # fmt: skip
    return path


def test_o_direct_works_on_ext4_and_not_on_ramfs(tmp_path: Path, ramfs: Path) -> None:
    on_disk, in_ram = tmp_path / "a.img", ramfs / "b.img"
    for path in (on_disk, in_ram):
        path.write_bytes(b"\1" * 65536)
    assert disk_io.direct_io_works(on_disk) is True
    assert disk_io.direct_io_works(in_ram) is False
    assert disk_io.direct_io_works(tmp_path / "missing.img") is False


def test_auto_takes_o_direct_and_io_uring_where_the_host_has_them(tmp_path: Path) -> None:
    disk = _qcow2(tmp_path / "d.qcow2", "1G")
    assert disk_io.choose(Disk(file=str(disk)), disk, io_uring=True) == disk_io.DiskIO(
        "io_uring", True, 1 << 20, ""
    )
    got = disk_io.choose(Disk(file=str(disk)), disk, io_uring=False)
    assert (got.aio, got.direct, got.note) == ("native", True, "io_uring is not available here")
    written = disk_io.choose(Disk(file=str(disk), cache="writeback"), disk, io_uring=False)
    assert (written.aio, written.direct) == ("threads", False)  # native needs O_DIRECT


def test_without_o_direct_auto_falls_back_and_explicit_modes_are_refused(ramfs: Path) -> None:
    disk = _qcow2(ramfs / "d.qcow2", "1G")
    got = disk_io.choose(Disk(file=str(disk)), disk, io_uring=True)
    assert (got.aio, got.direct, got.note) == (
        "io_uring",
        False,
        "its file system refuses O_DIRECT",
    )
    got = disk_io.choose(Disk(file=str(disk)), disk, io_uring=False)
    assert (got.aio, got.direct) == ("threads", False)
    assert got.note == "its file system refuses O_DIRECT; io_uring is not available here"
    with pytest.raises(EngineError, match="does not take O_DIRECT") as refused:
        disk_io.choose(Disk(file=str(disk), cache="none"), disk, io_uring=True)
    assert refused.value.hint and "auto" in refused.value.hint
    with pytest.raises(EngineError, match="aio=native needs O_DIRECT"):
        disk_io.choose(Disk(file=str(disk), aio="native"), disk, io_uring=True)


def test_explicit_io_uring_without_it_is_refused(tmp_path: Path) -> None:
    disk = _qcow2(tmp_path / "d.qcow2", "1G")
    with pytest.raises(EngineError, match="io_uring") as refused:
        disk_io.choose(Disk(file=str(disk), aio="io_uring"), disk, io_uring=False)
    assert refused.value.hint and "doctor" in refused.value.hint


def test_qemu_is_asked_for_io_uring_and_the_answer_follows_the_kernels_sysctl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMDESK_CACHE", str(tmp_path / "cache"))
    assert disk_io.io_uring_usable(QEMU) is True  # this host: Debian's QEMU, kernel 6.x
    with io_uring_disabled():
        assert disk_io.io_uring_usable(QEMU) is False  # a new sysctl value: asked again
    assert disk_io.io_uring_usable(QEMU) is True
    assert (tmp_path / "cache/disk-io/io_uring.json").is_file()


def test_the_l2_cache_covers_the_whole_virtual_disk(tmp_path: Path) -> None:
    # 8 bytes of L2 table per cluster: 64 GiB of 64 KiB clusters need 8 MiB.
    assert disk_io.l2_cache_for(_qcow2(tmp_path / "a.qcow2", "64G"), "qcow2") == 8 << 20
    assert disk_io.l2_cache_for(_qcow2(tmp_path / "b.qcow2", "1G"), "qcow2") == 1 << 20  # floor
    big = _qcow2(tmp_path / "c.qcow2", "1T", "-o", "cluster_size=2M")
    assert disk_io.l2_cache_for(big, "qcow2") == 4 << 20
    raw = tmp_path / "d.img"
    raw.write_bytes(b"\0" * 4096)
    assert disk_io.l2_cache_for(raw, "raw") is None
    assert disk_io.l2_cache_for(raw, "qcow2") is None  # not a qcow2 header: QEMU's default
