"""`vmdesk doctor`: the host checks, on this real host and with fake inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vmdesk.engines.qemu import doctor


def test_checks_on_this_host() -> None:
    checks = {c.name: c for c in doctor.checks(probe_accel=False)}
    for name in ("qemu-system-x86_64", "qemu-system-aarch64", "qemu-img", "firmware x86_64",
                 "firmware aarch64", "swtpm", "swtpm_setup", "virtiofsd", "free disk"):  # fmt: skip
        assert checks[name].ok, checks[name]
    assert (
        "7." in checks["qemu-system-aarch64"].detail or "8." in checks["qemu-system-aarch64"].detail
    )
    assert "accelerator x86_64" not in checks
    json.dumps([c.as_dict() for c in checks.values()])


def test_real_firmware_descriptors() -> None:
    descriptors = doctor.firmware_descriptors()
    uefi, secure = doctor.firmware_summary(descriptors, "x86_64")
    assert uefi >= 1 and secure >= 1
    assert doctor.firmware_summary(descriptors, "aarch64")[0] >= 1


def _descriptor(arch: str, features: list[str], interface: str = "uefi") -> str:
    return json.dumps({"interface-types": [interface], "features": features,
                       "targets": [{"architecture": arch, "machines": ["pc-q35-*"]}]})  # fmt: skip


def test_fake_firmware_dir(tmp_path: Path) -> None:
    (tmp_path / "10-plain.json").write_text(_descriptor("x86_64", []))
    (tmp_path / "20-secure.json").write_text(_descriptor("x86_64", ["secure-boot", "requires-smm"]))
    (tmp_path / "30-bios.json").write_text(_descriptor("x86_64", [], interface="bios"))
    (tmp_path / "40-arm.json").write_text(_descriptor("aarch64", []))
    (tmp_path / "50-broken.json").write_text("{not json")
    descriptors = doctor.firmware_descriptors(tmp_path)
    assert len(descriptors) == 4
    assert doctor.firmware_summary(descriptors, "x86_64") == (2, 1)
    assert doctor.firmware_summary(descriptors, "aarch64") == (1, 0)
    checks = {c.name: c for c in doctor.checks(probe_accel=False, firmware_dir=tmp_path / "no")}
    assert not checks["firmware x86_64"].ok
    assert "apt-get install ovmf" in checks["firmware x86_64"].fix
    assert "qemu-efi-aarch64" in checks["firmware aarch64"].fix


def test_missing_programs_become_failed_checks_with_fixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    checks = {c.name: c for c in doctor.checks(probe_accel=False)}
    assert not checks["qemu-system-aarch64"].ok
    assert "apt-get install qemu-system-arm" in checks["qemu-system-aarch64"].fix
    assert not checks["qemu-img"].ok and "qemu-utils" in checks["qemu-img"].fix
    assert checks["swtpm"].severity == "warning" and "swtpm" in checks["swtpm"].fix


def test_doctor_cli_json_includes_the_accelerator() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vmdesk.cli.main", "doctor", "--json"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "VMDESK_ACCEL": "auto"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    accel = next(c for name, c in checks.items() if name.startswith("accelerator"))
    assert accel["detail"].split(":")[0] in ("kvm", "tcg")
    table = subprocess.run(
        [sys.executable, "-m", "vmdesk.cli.main", "doctor", "--no-probe"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert table.returncode == 0
    assert "this host can run VMs" in table.stdout
