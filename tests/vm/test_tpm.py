"""TPM 2.0 through swtpm: QEMU and its swtpm start, talk, keep state and stop together.

The tiny guests cannot show the TPM themselves: Debian's arm64 kernel has no driver for
QEMU's tpm-tis-device, and the x86_64 tiny guest boots the kernel directly via PVH, where
QEMU 7.2 reserves too little room for the ACPI tables once a TPM adds its own (the guest
then finds them overwritten and may hang). So this runs on aarch64; the x86_64 argv is
pinned by a golden file, and a firmware-booted guest sees its TPM (the UEFI work).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.vm.conftest import CLI

pytestmark = pytest.mark.vm


def _swtpm_running(state_dir: Path) -> bool:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "swtpm" in cmdline and str(state_dir) in cmdline:
                return True
    return False


def test_swtpm_runs_with_the_vm_and_keeps_its_state_in_the_bundle(cli: CLI) -> None:
    cli("create", "vm", "--image", "tiny-linux", "--arch", "aarch64", "--tpm")
    state = cli.bundle("vm") / "tpm"
    cli("start", "vm", "--wait-ready")
    assert _swtpm_running(state)
    engine_log = (cli.bundle("vm") / "logs/engine.log").read_text()
    assert "tpm-tis-device,tpmdev=tpm0" in engine_log
    assert "powered off" in cli("stop", "vm", "--timeout", "30")
    assert not _swtpm_running(state)  # it went with QEMU
    # QEMU initialised the TPM through swtpm, which saved the TPM's state in the bundle.
    assert (state / "tpm2-00.permall").stat().st_size > 0
    before = (state / "tpm2-00.permall").read_bytes()
    cli("start", "vm", "--wait-ready")  # again, on the same state (replaying the plan)
    assert _swtpm_running(state)
    cli("stop", "vm", "--force")
    assert not _swtpm_running(state)
    assert (state / "tpm2-00.permall").stat().st_size == len(before)


def test_a_clone_gets_a_fresh_tpm(cli: CLI) -> None:
    cli("create", "vm", "--image", "tiny-linux", "--arch", "aarch64", "--tpm")
    cli("start", "vm", "--wait-ready")
    cli("stop", "vm", "--force")
    assert list((cli.bundle("vm") / "tpm").iterdir())
    cli("clone", "vm", "copy")
    assert not list((cli.bundle("copy") / "tpm").iterdir())
