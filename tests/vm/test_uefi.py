"""UEFI boot for real, on both architectures: QEMU's firmware (chosen from its descriptors)
boots the tiny guest's EFI-stub kernel from an EFI system partition, each VM keeps its own
UEFI variables, across boots, in its bundle, and secure boot is enforced."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import ImageGetter
from tests.vm.conftest import CLI
from tests.vm.esp import make_esp, start_to_prompt
from vmdesk.core.arch import ARCHES, Arch
from vmdesk.engines.qemu import firmware
from vmdesk.engines.qemu.process import SerialConsole

pytestmark = pytest.mark.vm

# A variable of our own: attributes NV|BS|RT (7, little endian) then the data.
GUID = "5d3ad2a4-7c1e-4e0b-9b5f-2f6a1c9e0d47"
VARIABLE = f"VmdeskTest-{GUID}"
EFIVARS = "/sys/firmware/efi/efivars"


def _create(cli: CLI, name: str, arch: Arch, esp: Path) -> None:
    cli("create", name, "--arch", arch, "--boot", "uefi", "--disk", str(esp), "--nic", "none",
        "--cpus", "1", "--memory", "512MiB", "--display", "none", "--no-vnc")  # fmt: skip


def _variable(console: SerialConsole) -> str:
    """Our variable as od prints it, or od's complaint."""
    try:
        # Short commands: a line that wraps at 80 columns confuses console.run.
        console.send(f"cd {EFIVARS}")
        assert int(console.run("ls | wc -l")) > 5  # efivarfs is mounted: Boot####, ...
        return console.run("od -An -tx1 Vmdesk*").strip()
    finally:
        console.close()


@pytest.mark.parametrize("arch", ARCHES)
def test_uefi_boot_and_per_vm_variables_that_persist(
    cli: CLI, arch: Arch, tiny_image: ImageGetter, tmp_path: Path
) -> None:
    image = tiny_image(arch)
    _create(cli, "vm", arch, make_esp(image, tmp_path / "esp.img"))
    _create(cli, "other", arch, make_esp(image, tmp_path / "esp-other.img"))
    nvram = cli.bundle("vm") / "nvram" / "efivars.fd"
    template = firmware.select(arch, secure_boot=False)[1]
    assert not nvram.exists()  # made from the template on the first start

    # Boot 1: the firmware runs the kernel's EFI stub; the guest writes a variable.
    (console,) = start_to_prompt(cli, "vm")
    try:
        console.send(f"cd {EFIVARS}")
        assert console.run("cat ../fw_platform_size") == "64"
        console.send(f"printf '\\007\\000\\000\\000kept' > {VARIABLE}")
        assert console.run("echo $?") == "0"
    finally:
        console.close()
    assert "powered off" in cli("stop", "vm", "--timeout", "60")  # cleanly, by the guest
    assert nvram.is_file() and nvram.stat().st_size == template.stat().st_size
    stored = nvram.read_bytes()
    assert stored != template.read_bytes()
    assert "VmdeskTest".encode("utf-16-le") in stored  # variable names are UCS-2

    # Boot 2 of the same VM reads it back; another VM, booted alongside, never had it.
    again, other = start_to_prompt(cli, "vm", "other")
    assert _variable(again) == "07 00 00 00 6b 65 70 74"  # NV|BS|RT, "kept"
    assert "No such file" in _variable(other)
    assert "powered off" in cli("stop", "vm", "--timeout", "60")
    cli("stop", "other", "--force")
    other_nvram = cli.bundle("other") / "nvram" / "efivars.fd"
    assert "VmdeskTest".encode("utf-16-le") not in other_nvram.read_bytes()
    engine_log = (cli.bundle("vm") / "logs" / "engine.log").read_text()
    assert f"filename={firmware.select(arch, False)[0]}" in engine_log  # the chosen build
    assert f"filename={nvram}" in engine_log


@pytest.mark.parametrize("arch", ARCHES)
def test_secure_boot_runs_only_signed_code(
    cli: CLI, arch: Arch, tiny_image: ImageGetter, tmp_path: Path
) -> None:
    """The enrolled-keys build enforces secure boot from the first start: it refuses even
    its own (unsigned) UEFI shell, so neither startup.nsh nor the kernel ever runs."""
    cli("create", "vm", "--arch", arch, "--boot", "uefi", "--secure-boot", "--nic", "none",
        "--disk", str(make_esp(tiny_image(arch), tmp_path / "esp.img")), "--cpus", "1",
        "--memory", "512MiB", "--display", "none", "--no-vnc")  # fmt: skip
    cli("start", "vm")
    console = cli.console("vm")
    try:
        console.wait_for(r'failed to start Boot\d+ "EFI Internal Shell".*Security Violation', 180)
        assert "VMDESK-READY" not in console.text
    finally:
        console.close()
    cli("stop", "vm", "--force")
    code, template = firmware.select(arch, secure_boot=True)
    assert code != firmware.select(arch, secure_boot=False)[0]
    nvram = cli.bundle("vm") / "nvram"
    assert sorted(p.name for p in nvram.iterdir()) == ["efivars-secure.fd"]
    assert (nvram / "efivars-secure.fd").stat().st_size == template.stat().st_size
    engine_log = (cli.bundle("vm") / "logs" / "engine.log").read_text()
    assert f"filename={code}," in engine_log
    if arch == "x86_64":  # only SMM code may write the variables
        assert "smm=on" in engine_log
        assert "driver=cfi.pflash01,property=secure,value=on" in engine_log


@pytest.mark.parametrize("arch", ARCHES)
def test_firmware_never_waits_on_a_network_boot_nobody_asked_for(
    cli: CLI, arch: Arch, tiny_image: ImageGetter, tmp_path: Path
) -> None:
    """A UEFI VM with the default NAT NIC goes straight to its disk: edk2 once tried PXE
    and HTTP boot over IPv4 and IPv6 for minutes before it got to the disk's startup.nsh."""
    esp = make_esp(tiny_image(arch), tmp_path / "esp.img")
    cli("create", "vm", "--arch", arch, "--boot", "uefi", "--disk", str(esp),
        "--cpus", "1", "--memory", "512MiB", "--display", "none", "--no-vnc")  # fmt: skip
    started = time.monotonic()
    cli("start", "vm")
    log = cli.bundle("vm") / "logs" / "serial.log"
    while b"startup.nsh" not in (log.read_bytes() if log.exists() else b""):
        assert time.monotonic() - started < 30, log.read_bytes()[-2000:]
        time.sleep(0.2)
    took = time.monotonic() - started
    assert b"PXE" not in log.read_bytes() and b"HTTP" not in log.read_bytes(), took
    cli("stop", "vm", "--force")
