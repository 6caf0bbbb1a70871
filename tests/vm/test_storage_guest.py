"""Disks and CD-ROMs as a guest sees them: booted for real on both architectures."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pycdlib
import pytest

from tests.vm.conftest import CLI
from vmdesk.core.arch import ARCHES, Arch

pytestmark = pytest.mark.vm


def _iso(path: Path, text: bytes) -> None:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="VMDESKTEST")
    iso.add_fp(io.BytesIO(text), len(text), "/HELLO.TXT;1", rr_name="hello.txt",
               joliet_path="/hello.txt")  # fmt: skip
    iso.write(str(path))
    iso.close()


@pytest.mark.parametrize("arch", ARCHES)
def test_guest_sees_added_disks_and_reads_the_cd(cli: CLI, arch: Arch, tmp_path: Path) -> None:
    iso = tmp_path / "media.iso"
    _iso(iso, b"hello from the CD\n")
    cli("create", "vm", "--image", "tiny-linux", "--arch", arch)
    cli("disk", "add", "vm", "--size", "1GiB")
    cli("disk", "add", "vm", "--size", "3GiB", "--format", "raw", "--interface", "nvme")
    cli("cd", "insert", "vm", str(iso))
    cli("start", "vm", "--wait-ready")
    console = cli.console("vm")
    try:
        assert console.run("cat /sys/block/vda/size") == str((1 << 30) // 512)
        assert console.run("cat /sys/block/nvme0n1/size") == str((3 << 30) // 512)
        # The guest writes to its disk; the data is on the host image afterwards.
        console.run("echo written-by-the-guest > /dev/vda; sync")
        console.run("modprobe sr_mod; modprobe isofs; mkdir -p /cd", timeout=30)
        console.run(
            "for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/sr0 ] && break; sleep 1; done", timeout=30
        )
        console.run("mount -t iso9660 -o ro /dev/sr0 /cd", timeout=30)
        assert console.run("cat /cd/hello.txt") == "hello from the CD"
    finally:
        console.close()
    cli("stop", "vm", "--force")
    disk = cli.bundle("vm") / "disks/disk0.qcow2"
    flat = tmp_path / "disk0.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(disk), str(flat)], check=True)
    with flat.open("rb") as data:
        assert data.read(21) == b"written-by-the-guest\n"
