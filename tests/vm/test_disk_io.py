"""The disks' tuned I/O in a booted guest: each probed option falls back on a host that
lacks it (a disk on ramfs has no O_DIRECT, a kernel with io_uring switched off), the VM
still starts and `show` says what it got; and the guest's trims give the host its space
back."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import io_uring_disabled
from tests.vm.conftest import CLI

pytestmark = pytest.mark.vm
# 512 MiB that are not zeroes, in big writes (busybox's yes writes a line at a time)
FILL = ("head -c 1048576 /dev/urandom > /tmp/mib && "
        "for i in $(seq 512); do cat /tmp/mib; done")  # fmt: skip


def _io_lines(cli: CLI, vm: str) -> list[str]:
    return re.findall(r"^ +I/O .*; last start: (.*)$", cli("show", vm), re.MULTILINE)


def _allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def _start_and_write(cli: CLI, vm: str) -> None:
    """Start the VM and have the guest write to (and read back from) both disks."""
    cli("start", vm, "--wait-ready")
    console = cli.console(vm)
    try:
        for dev in ("vda", "vdb"):
            console.run(f"echo io-on-{dev} > /dev/{dev}; sync")
            assert console.run(f"head -c 9 /dev/{dev}; echo") == f"io-on-{dev}"
    finally:
        console.close()
    cli("stop", vm, "--force")


def test_every_probed_option_falls_back_and_the_vm_still_starts(cli: CLI, ramfs: Path) -> None:
    cli("create", "vm", "--image", "tiny-linux", "--arch", "x86_64")
    cli("disk", "add", "vm", "--size", "1GiB")  # in the library: ext4 here
    in_ram = ramfs / "data.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(in_ram), "1G"], check=True)
    cli("disk", "attach", "vm", str(in_ram))

    _start_and_write(cli, "vm")
    on_disk, on_ramfs = _io_lines(cli, "vm")
    assert on_disk.startswith("aio=io_uring, O_DIRECT"), on_disk
    assert on_ramfs.startswith("aio=io_uring, page cache"), on_ramfs
    assert "its file system refuses O_DIRECT" in on_ramfs

    with io_uring_disabled():  # the kernel refuses io_uring meanwhile
        _start_and_write(cli, "vm")  # same description: the launch plan must not replay
    on_disk, on_ramfs = _io_lines(cli, "vm")
    assert on_disk.startswith("aio=native, O_DIRECT"), on_disk
    assert "io_uring is not available here" in on_disk
    assert on_ramfs.startswith("aio=threads, page cache"), on_ramfs


def test_a_file_deleted_and_trimmed_in_the_guest_frees_the_hosts_space(cli: CLI) -> None:
    cli("create", "vm", "--image", "tiny-linux", "--arch", "x86_64", "--memory", "1GiB")
    cli("disk", "add", "vm", "--size", "2GiB")
    disk = cli.bundle("vm") / "disks/disk0.qcow2"
    cli("start", "vm", "--wait-ready")
    console = cli.console("vm")
    try:
        mounted = console.run("modprobe crc32c_generic && modprobe ext4 && mke2fs -q /dev/vda "
                              "&& mkdir -p /data && mount -t ext4 /dev/vda /data && echo MOUNTED",
                              timeout=60)  # fmt: skip
        assert mounted.endswith("MOUNTED"), mounted
        console.run(f"{FILL} > /data/big; sync", timeout=300)
        full = _allocated(disk)
        assert full >= 512 << 20, full
        assert "trimmed" in console.run("rm /data/big && sync && fstrim -v /data", timeout=120)
        trimmed = _allocated(disk)
    finally:
        console.close()
    assert full - trimmed >= 400 << 20, (full, trimmed)
