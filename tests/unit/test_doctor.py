"""Host readiness checks: on this real host (Debian 12, QEMU 7.2) and with fake inputs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from vmdesk.core.arch import host_arch
from vmdesk.engines.qemu import accel, binaries, doctor, firmware

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
    summary, *builds = checks["firmware x86_64"].detail.split("\n")
    assert re.fullmatch(r"\d+ UEFI builds, \d+ with secure boot", summary)
    # then one line per build: descriptor, code file, features, and its use
    assert len(builds) == int(summary.split()[0])
    assert any(re.fullmatch(r"\S+\.json: /\S+ \(.*secure-boot.*\) - used for secure boot", b)
               for b in builds), builds  # fmt: skip
    assert any(re.fullmatch(r"\S+\.json: /\S+ \(.*\) - used for UEFI", b) for b in builds)
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
    descriptors = doctor.firmware_descriptors([tmp_path])
    assert len(descriptors) == 6  # the broken JSON and the non-object are skipped
    assert doctor.firmware_summary(descriptors, "x86_64") == (2, 1)
    assert doctor.firmware_summary(descriptors, "aarch64") == (1, 0)

    checks = _by_name(doctor.checks(probe_accel=False, firmware_dirs=[tmp_path]))
    # none of these name flash images, so none is usable: listed, with why
    assert not checks["firmware x86_64"].ok
    assert checks["firmware x86_64"].detail.split("\n") == [
        "2 UEFI builds, 1 with secure boot, none usable for UEFI boot",
        "10-plain.json: (no mapping) (no features) - unused: not a flash build with a "
        "variable store template",
        "20-secure.json: (no mapping) (secure-boot, requires-smm) - unused: "
        "no secure boot with enrolled keys",
    ]
    assert "sudo apt-get install ovmf" in checks["firmware x86_64"].fix
    assert checks["firmware aarch64"].detail.startswith("1 UEFI builds, 0 with secure boot")


def _flash(tmp_path: Path, name: str, arch: str, features: list[str]) -> Path:
    """A descriptor of a flash build whose two images exist under tmp_path."""
    code, template = tmp_path / f"{name}-code.fd", tmp_path / f"{name}-vars.fd"
    code.write_bytes(b"c")
    template.write_bytes(b"v")
    data = json.loads(_descriptor(arch, features))
    data["targets"][0]["machines"] = ["virt-*"] if arch == "aarch64" else ["pc-q35-*"]
    data["mapping"] = {
        "device": "flash",
        "executable": {"filename": str(code), "format": "raw"},
        "nvram-template": {"filename": str(template), "format": "raw"},
    }
    path = tmp_path / "fw" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data))
    return code


def test_firmware_listing_names_each_build_and_its_use(tmp_path: Path) -> None:
    enrolled = _flash(tmp_path, "40-sb", "x86_64", ["enrolled-keys", "requires-smm", "secure-boot"])
    plain = _flash(tmp_path, "60-plain", "x86_64", ["acpi-s3"])
    _flash(tmp_path, "70-later", "x86_64", [])
    arm = _flash(tmp_path, "60-arm", "aarch64", [])
    checks = _by_name(doctor.checks(probe_accel=False, firmware_dirs=[tmp_path / "fw"]))
    x86 = checks["firmware x86_64"]
    assert x86.ok and x86.fix == ""
    assert x86.detail.split("\n") == [
        "3 UEFI builds, 1 with secure boot",
        f"40-sb.json: {enrolled} (enrolled-keys, requires-smm, secure-boot) - used for secure boot",
        f"60-plain.json: {plain} (acpi-s3) - used for UEFI",
        f"70-later.json: {tmp_path / '70-later-code.fd'} (no features) - unused: a build before "
        "it wins",
    ]
    assert checks["firmware aarch64"].detail.split("\n") == [
        "1 UEFI builds, 0 with secure boot",
        f"60-arm.json: {arm} (no features) - used for UEFI",
    ]


def test_missing_firmware_names_the_package(tmp_path: Path) -> None:
    assert doctor.firmware_descriptors([tmp_path / "absent"]) == []
    checks = _by_name(doctor.checks(probe_accel=False, firmware_dirs=[tmp_path / "absent"]))
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


def test_the_doctor_command_lists_the_firmware(tmp_path: Path) -> None:
    """`vmdesk doctor` shows each build on a row of its own; --json carries the same lines."""
    env = {**os.environ, "VMDESK_HOME": str(tmp_path), "COLUMNS": "250"}
    run = [sys.executable, "-m", "vmdesk.cli.main", "doctor", "--no-probe"]
    table = subprocess.run(run, capture_output=True, text=True, env=env, check=True).stdout
    for arch in ("x86_64", "aarch64"):
        plain = firmware.choose(arch, False, firmware.descriptors())
        assert plain is not None and plain.code is not None
        row = next(line for line in table.splitlines() if f"  {plain.name}: " in line)
        assert str(plain.code.path) in row and "used for UEFI" in row
    shown = json.loads(
        subprocess.run([*run, "--json"], capture_output=True, text=True, env=env).stdout
    )
    detail = next(c["detail"] for c in shown if c["name"] == "firmware x86_64")
    assert "used for secure boot" in detail and "enrolled-keys" in detail
