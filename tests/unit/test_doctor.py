"""Host readiness checks: on this real host (Debian 12, QEMU 7.2) and with fake inputs."""

from __future__ import annotations

import json
import re
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from vmdesk.core.arch import host_arch
from vmdesk.engines.qemu import accel, binaries, doctor

_QEMU_CHECKS = ("qemu-system-x86_64", "qemu-system-aarch64", "qemu-img")
_HOST_READY = (*_QEMU_CHECKS, "firmware x86_64", "firmware aarch64", "swtpm", "swtpm_setup")


def _by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    names = [c.name for c in checks]
    assert len(names) == len(set(names)), names
    return {c.name: c for c in checks}


def _descriptor(arch: str, features: list[str], interface: str = "uefi") -> str:
    return json.dumps({"interface-types": [interface], "features": features,
                       "targets": [{"architecture": arch, "machines": ["pc-q35-*"]}]})  # fmt: skip


def test_checks_on_this_host() -> None:
    checks = _by_name(doctor.checks(probe_accel=False))
    for name in (*_HOST_READY, "virtiofsd", "free disk"):
        assert name in checks
    for name in _HOST_READY:
        assert checks[name].ok, checks[name]
        assert checks[name].fix == ""
    for arch in ("x86_64", "aarch64"):
        assert re.search(r"\b7\.2\.\d+ at /", checks[f"qemu-system-{arch}"].detail)
    assert re.fullmatch(r"\d+ UEFI builds, \d+ with secure boot", checks["firmware x86_64"].detail)
    assert re.fullmatch(r"\d+\.\d GiB free at /.*", checks["free disk"].detail)
    assert not any(name.startswith("accelerator") for name in checks)
    for name in ("swtpm", "swtpm_setup", "virtiofsd", "free disk"):
        assert checks[name].severity == "warning"  # the class is reported even when ok


def test_every_failed_check_has_a_fix() -> None:
    for check in doctor.checks(probe_accel=False):
        assert check.ok or check.fix, check
        assert check.severity in ("error", "warning")


def test_as_dict_round_trips_through_json() -> None:
    checks = doctor.checks(probe_accel=False)
    loaded = json.loads(json.dumps([c.as_dict() for c in checks]))
    assert [doctor.Check(**d) for d in loaded] == checks
    assert set(loaded[0]) == {"name", "ok", "detail", "fix", "severity"}


def test_real_firmware_descriptors() -> None:
    descriptors = doctor.firmware_descriptors()
    uefi, secure = doctor.firmware_summary(descriptors, "x86_64")
    assert uefi >= 1 and secure >= 1
    assert doctor.firmware_summary(descriptors, "aarch64")[0] >= 1


def test_fake_firmware_dir(tmp_path: Path) -> None:
    (tmp_path / "10-plain.json").write_text(_descriptor("x86_64", []))
    (tmp_path / "20-secure.json").write_text(_descriptor("x86_64", ["secure-boot", "requires-smm"]))
    (tmp_path / "30-bios.json").write_text(_descriptor("x86_64", [], interface="bios"))
    (tmp_path / "40-arm.json").write_text(_descriptor("aarch64", []))
    (tmp_path / "45-riscv.json").write_text(_descriptor("riscv64", ["secure-boot"]))
    (tmp_path / "50-broken.json").write_text("{not json")
    (tmp_path / "60-list.json").write_text("[1, 2]")
    (tmp_path / "70-odd.json").write_text(json.dumps({"targets": "x86_64", "features": 3}))
    (tmp_path / "README").write_text("not a descriptor")
    descriptors = doctor.firmware_descriptors(tmp_path)
    assert len(descriptors) == 6  # the broken JSON and the non-object are skipped
    assert doctor.firmware_summary(descriptors, "x86_64") == (2, 1)
    assert doctor.firmware_summary(descriptors, "aarch64") == (1, 0)

    checks = _by_name(doctor.checks(probe_accel=False, firmware_dir=tmp_path))
    assert checks["firmware x86_64"].ok
    assert checks["firmware x86_64"].detail == "2 UEFI builds, 1 with secure boot"
    assert checks["firmware aarch64"].detail == "1 UEFI builds, 0 with secure boot"


def test_missing_firmware_names_the_package(tmp_path: Path) -> None:
    assert doctor.firmware_descriptors(tmp_path / "absent") == []
    checks = _by_name(doctor.checks(probe_accel=False, firmware_dir=tmp_path / "absent"))
    assert not checks["firmware x86_64"].ok
    assert checks["firmware x86_64"].severity == "error"
    assert "sudo apt-get install ovmf" in checks["firmware x86_64"].fix
    assert "sudo apt-get install qemu-efi-aarch64" in checks["firmware aarch64"].fix
    assert checks["firmware aarch64"].detail.startswith("0 UEFI builds, 0 with secure boot")


def test_missing_programs_become_failed_checks_with_fixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    checks = _by_name(doctor.checks(probe_accel=False))
    for name in _QEMU_CHECKS:
        assert not checks[name].ok and checks[name].severity == "error", checks[name]
    assert "sudo apt-get install qemu-system-x86" in checks["qemu-system-x86_64"].fix
    assert "sudo apt-get install qemu-system-arm" in checks["qemu-system-aarch64"].fix
    assert checks["qemu-img"].fix == "sudo apt-get install qemu-utils"
    for name in ("swtpm", "swtpm_setup"):
        assert not checks[name].ok and checks[name].severity == "warning"
        assert checks[name].fix == "sudo apt-get install swtpm swtpm-tools"


def test_old_or_unreadable_qemu_version_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binaries, "version", lambda binary: (6, 2, 0))
    checks = _by_name(doctor.checks(probe_accel=False))
    assert not checks["qemu-system-x86_64"].ok
    assert checks["qemu-system-x86_64"].detail.startswith("6.2.0 at ")
    assert "7.2" in checks["qemu-system-x86_64"].fix
    monkeypatch.setattr(binaries, "version", lambda binary: (0, 0, 0))
    checks = _by_name(doctor.checks(probe_accel=False))
    assert not checks["qemu-system-aarch64"].ok
    assert "unknown version" in checks["qemu-system-aarch64"].detail


def test_unexpected_exceptions_become_failed_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(binaries, "system_binary", boom)
    monkeypatch.setattr(shutil, "disk_usage", boom)
    checks = _by_name(doctor.checks(probe_accel=False))
    qemu = checks["qemu-system-x86_64"]
    assert not qemu.ok and qemu.severity == "error"
    assert "RuntimeError: disk on fire" in qemu.detail and "vmdesk --debug doctor" in qemu.fix
    assert not checks["free disk"].ok and checks["free disk"].severity == "warning"


def test_low_disk_is_a_warning_at_the_nearest_existing_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMDESK_HOME", str(tmp_path / "not" / "yet"))
    usage = namedtuple("usage", "total used free")
    seen: list[Path] = []

    def small(path: Path) -> tuple[int, int, int]:
        seen.append(Path(path))
        return usage(10 << 30, 9 << 30, 3 << 29)

    monkeypatch.setattr(shutil, "disk_usage", small)
    check = _by_name(doctor.checks(probe_accel=False))["free disk"]
    assert seen == [tmp_path]
    assert not check.ok and check.severity == "warning"
    assert check.detail == f"1.5 GiB free at {tmp_path}"
    assert "VMDESK_HOME" in check.fix


def test_missing_virtiofsd_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "find_virtiofsd", lambda: None)
    check = _by_name(doctor.checks(probe_accel=False))["virtiofsd"]
    assert not check.ok and check.severity == "warning"
    assert "qemu-system-common" in check.fix and "virtiofsd" in check.fix


def test_find_virtiofsd_on_this_host() -> None:
    found = doctor.find_virtiofsd()
    assert found is not None and found.name == "virtiofsd"


@pytest.mark.parametrize(
    ("reason", "fix_part"),
    [
        ("requested with --accel/VMDESK_ACCEL", "unset VMDESK_ACCEL"),
        ("KVM is not usable: no permission to open /dev/kvm", "usermod -aG kvm"),
        ("KVM is not usable: /dev/kvm does not exist", "modprobe kvm"),
        ("/dev/kvm is present but a KVM probe guest failed (x)", "nested"),
    ],
)
def test_tcg_on_a_same_arch_host_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, reason: str, fix_part: str
) -> None:
    local = host_arch()
    assert local is not None
    monkeypatch.setattr(accel, "choose", lambda arch: accel.AccelChoice("tcg", reason))
    check = _by_name(doctor.checks(probe_accel=True))[f"accelerator {local}"]
    assert not check.ok and check.severity == "warning"
    assert check.detail == f"tcg: {reason}"
    assert check.fix.startswith("VMs run under slower TCG emulation; ") and fix_part in check.fix


def test_a_bad_accel_override_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMDESK_ACCEL", "warp-drive")
    check = next(c for c in doctor.checks(probe_accel=True) if c.name.startswith("accelerator"))
    assert not check.ok and check.severity == "warning"
    assert "warp-drive" in check.detail and "auto" in check.fix


def test_accelerator_is_really_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Boots the KVM probe guest once per host boot (cached after), so may take ~15 s."""
    monkeypatch.delenv("VMDESK_ACCEL", raising=False)
    accels = [c for c in doctor.checks(probe_accel=True) if c.name.startswith("accelerator")]
    assert len(accels) == 1
    check = accels[0]
    assert check.name == f"accelerator {host_arch()}"
    assert check.detail.split(":")[0] in ("kvm", "tcg"), check
    assert check.ok or check.fix
    json.dumps(check.as_dict())
