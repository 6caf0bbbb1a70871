"""Build both tiny guests and boot them for real under QEMU (TCG here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ImageGetter
from vmdesk.core.arch import ARCHES, Arch
from vmdesk.engines.qemu.boot_argv import BootSpec, Share
from vmdesk.engines.qemu.process import QemuProcess
from vmdesk.images import tiny_linux

pytestmark = pytest.mark.vm
BOOT_TIMEOUT = 90.0
POWERDOWN_BOUND = 10.0  # seconds from the power button to QEMU exiting


@pytest.mark.parametrize("arch", ARCHES)
def test_boots_answers_on_serial_and_powers_off(
    arch: Arch, tiny_image: ImageGetter, tmp_path: Path
) -> None:
    image = tiny_image(arch)
    spec = BootSpec(arch, "tcg", image.kernel, image.initrd, image.cmdline())
    with QemuProcess(spec, log_dir=tmp_path) as vm:
        ready = vm.wait_serial(tiny_linux.READY_PATTERN, BOOT_TIMEOUT)
        facts = tiny_linux.parse_ready(ready.group(1))
        assert facts["arch"] == arch
        assert facts["kernel"] == image.kernel_release
        assert facts["net"] == "eth0=10.0.2.15/24"  # DHCP from QEMU's user-mode network
        assert vm.serial.run("echo $((6*7))") == "42"
        assert vm.serial.run("uname -m") == arch
        assert vm.status() == "running"
        seconds = vm.powerdown(timeout=POWERDOWN_BOUND)
        assert vm.returncode == 0
        print(f"{arch}: powered off {seconds:.2f} s after the power button")
    # the serial log file has the whole console, too
    assert "VMDESK-POWERBUTTON" in (tmp_path / "serial.log").read_text()


@pytest.mark.parametrize("arch", ARCHES)
def test_9p_share_is_mounted_both_ways(arch: Arch, tiny_image: ImageGetter, tmp_path: Path) -> None:
    image = tiny_image(arch)
    shared = tmp_path / "shared dir"
    shared.mkdir()
    (shared / "from-host.txt").write_text("hello from the host\n")
    spec = BootSpec(
        arch, "tcg", image.kernel, image.initrd,
        image.cmdline(shares="hostfiles:/mnt/host:9p"), nic=False,
        shares=(Share("hostfiles", shared),),
    )  # fmt: skip
    with QemuProcess(spec, log_dir=tmp_path / "logs") as vm:
        facts = tiny_linux.parse_ready(vm.wait_serial(tiny_linux.READY_PATTERN, BOOT_TIMEOUT)[1])
        assert facts["shares"] == "hostfiles"
        assert facts["net"] == "none"
        assert vm.serial.run("cat /mnt/host/from-host.txt") == "hello from the host"
        vm.serial.run("echo written by the guest > /mnt/host/from-guest.txt; sync")
        assert (shared / "from-guest.txt").read_text() == "written by the guest\n"
        vm.powerdown(timeout=POWERDOWN_BOUND)


def test_halt_argument_powers_off_right_after_ready(tiny_image: ImageGetter) -> None:
    image = tiny_image("aarch64")
    spec = BootSpec("aarch64", "tcg", image.kernel, image.initrd, image.cmdline(halt=True))
    with QemuProcess(spec) as vm:
        vm.wait_serial(tiny_linux.READY_PATTERN, BOOT_TIMEOUT)
        assert vm.wait_exit(POWERDOWN_BOUND) == 0


def test_second_build_is_served_from_the_cache(tiny_image: ImageGetter) -> None:
    first = tiny_image("aarch64")
    steps: list[str] = []
    again = tiny_linux.build("aarch64", progress=steps.append)
    assert again.directory == first.directory
    assert not any(step.startswith("downloading") for step in steps), steps
    assert tiny_linux.find("aarch64").directory == first.directory


@pytest.mark.parametrize("arch", ARCHES)
def test_the_image_keeps_a_kernel_that_uefi_firmware_can_run(
    arch: Arch, tiny_image: ImageGetter
) -> None:
    image = tiny_image(arch)
    manifest = json.loads((image.directory / "manifest.json").read_text())
    assert manifest["efi_kernel"] == image.efi_kernel.name == "vmlinuz"
    head = image.efi_kernel.read_bytes()[:4096]
    assert head[:2] == b"MZ"  # a PE image (the EFI stub) ...
    pe = int.from_bytes(head[0x3C:0x40], "little")
    assert head[pe : pe + 4] == b"PE\0\0"
    machine = int.from_bytes(head[pe + 4 : pe + 6], "little")
    assert machine == {"x86_64": 0x8664, "aarch64": 0xAA64}[arch]
    if arch == "x86_64":
        assert head[0x202:0x206] == b"HdrS"  # ... and still a bzImage
        assert image.kernel.name == "vmlinux"  # direct boots keep the fast PVH path
