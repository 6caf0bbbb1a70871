"""A UEFI-booted x86_64 guest sees its TPM 2.0 (tpm-crb through swtpm), and the firmware
measured the boot into it.

Booted by the firmware through the kernel's EFI stub, the guest gets its ACPI tables from
OVMF, TPM2 table included, which the direct PVH boot of the other tests cannot offer (see
test_tpm.py). aarch64 is left out: Debian's arm64 kernel has no driver for the TIS
interface of QEMU's tpm-tis-device (CONFIG_TCG_TIS is off), even when UEFI describes it in
ACPI as MSFT0101.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ImageGetter
from tests.vm.conftest import CLI
from tests.vm.esp import make_esp, start_to_prompt

pytestmark = pytest.mark.vm


def test_uefi_guest_sees_a_tpm2_with_measurements(
    cli: CLI, tiny_image: ImageGetter, tmp_path: Path
) -> None:
    esp = make_esp(tiny_image("x86_64"), tmp_path / "esp.img")
    cli("create", "vm", "--arch", "x86_64", "--boot", "uefi", "--disk", str(esp), "--tpm",
        "--nic", "none", "--cpus", "1", "--memory", "512MiB", "--display", "none",
        "--no-vnc")  # fmt: skip
    (console,) = start_to_prompt(cli, "vm")
    try:
        console.send("cd /sys/class/tpm/tpm0")  # short commands: see test_uefi.py
        assert console.run("cat tpm_version_major") == "2"
        assert "MSFT0101" in console.run("cat device/modalias")  # the ACPI TPM 2.0 device
        # OVMF extends PCR 0 with its own code before anything else runs.
        pcr0 = console.run("cat pcr-sha256/0")
        assert len(pcr0) == 64 and pcr0.strip("0") and pcr0.strip("F")
    finally:
        console.close()
    assert "powered off" in cli("stop", "vm", "--timeout", "60")
    assert (cli.bundle("vm") / "tpm" / "tpm2-00.permall").stat().st_size > 0
