"""Choosing UEFI firmware from QEMU's descriptor files, as QEMU's docs/interop/firmware.json
says: merged across directories by file name, the more specific directory winning, empty
files hiding, the first usable build in name order chosen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmdesk.core.errors import HostToolMissing
from vmdesk.engines.qemu import firmware

_MACHINES = {"x86_64": ["pc-q35-*"], "aarch64": ["virt-*"]}


class Host:
    """A fake host: firmware images under files/, descriptor directories usr/ and etc/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.usr = root / "usr"
        self.etc = root / "etc"
        self.dirs = [self.usr, self.etc]

    def image(self, name: str) -> Path:
        path = self.root / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
        return path

    def build(
        self,
        name: str,
        arch: str = "x86_64",
        features: tuple[str, ...] = (),
        *,
        where: str = "usr",
        machines: list[str] | None = None,
        fmt: str = "raw",
        device: str = "flash",
    ) -> tuple[Path, Path]:
        """Write descriptor ``name`` for a flash build whose images exist; returns them."""
        stem = name.removesuffix(".json")
        code, template = self.image(f"{stem}-CODE.fd"), self.image(f"{stem}-VARS.fd")
        data = {
            "description": f"test build {stem}",
            "interface-types": ["uefi"],
            "mapping": {
                "device": device,
                "executable": {"filename": str(code), "format": fmt},
                "nvram-template": {"filename": str(template), "format": fmt},
            },
            "targets": [{"architecture": arch, "machines": machines or _MACHINES[arch]}],
            "features": list(features),
            "tags": [],
        }
        self.write(name, json.dumps(data), where=where)
        return code, template

    def write(self, name: str, text: str, *, where: str = "usr") -> None:
        directory = self.usr if where == "usr" else self.etc
        directory.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)


SB = ("enrolled-keys", "requires-smm", "secure-boot")


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def test_the_search_path_goes_from_general_to_specific(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "/home/u/.cfg")
    assert firmware.search_dirs() == (
        Path("/usr/share/qemu/firmware"),
        Path("/opt/homebrew/share/qemu/firmware"),
        Path("/usr/local/share/qemu/firmware"),
        Path("/etc/qemu/firmware"),
        Path("/home/u/.cfg/qemu/firmware"),
    )
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert firmware.search_dirs()[-1] == Path.home() / ".config/qemu/firmware"


def test_plain_and_secure_builds_are_told_apart(host: Host) -> None:
    sb = host.build("40-edk2-x86_64-secure-enrolled.json", features=SB)
    host.build("50-edk2-x86_64-secure.json", features=("requires-smm", "secure-boot"))
    plain = host.build("60-edk2-x86_64.json", features=("acpi-s3",))
    arm = host.build("60-edk2-aarch64.json", "aarch64")
    arm_sb = host.build("40-edk2-aarch64-secure-enrolled.json", "aarch64", SB[::2])
    assert firmware.select("x86_64", False, host.dirs) == plain
    assert firmware.select("x86_64", True, host.dirs) == sb
    assert firmware.select("aarch64", False, host.dirs) == arm
    assert firmware.select("aarch64", True, host.dirs) == arm_sb


def test_files_are_sorted_by_name_across_directories(host: Host) -> None:
    host.build("60-distro.json")
    early = host.build("10-admin.json", where="etc")
    host.build("90-admin.json", where="etc")
    assert [p.name for p in firmware.descriptor_files(host.dirs)] == [
        "10-admin.json", "60-distro.json", "90-admin.json",
    ]  # fmt: skip
    assert firmware.select("x86_64", False, host.dirs) == early


def test_a_file_in_etc_replaces_the_same_name_in_usr_share(host: Host) -> None:
    host.build("60-edk2-x86_64.json")
    replacement = host.image("custom-CODE.fd"), host.image("custom-VARS.fd")
    data = json.loads((host.usr / "60-edk2-x86_64.json").read_text())
    data["mapping"]["executable"]["filename"] = str(replacement[0])
    data["mapping"]["nvram-template"]["filename"] = str(replacement[1])
    host.write("60-edk2-x86_64.json", json.dumps(data), where="etc")
    files = firmware.descriptor_files(host.dirs)
    assert files == [host.etc / "60-edk2-x86_64.json"]
    assert firmware.select("x86_64", False, host.dirs) == replacement


def test_an_empty_file_in_etc_hides_a_build(host: Host) -> None:
    host.build("40-first.json")
    second = host.build("60-second.json")
    host.write("40-first.json", "", where="etc")
    assert [p.name for p in firmware.descriptor_files(host.dirs)] == ["60-second.json"]
    assert firmware.select("x86_64", False, host.dirs) == second


def test_secure_boot_needs_enrolled_keys(host: Host) -> None:
    host.build("50-secure-no-keys.json", features=("requires-smm", "secure-boot"))
    host.build("60-plain.json")
    with pytest.raises(HostToolMissing) as caught:
        firmware.select("x86_64", True, host.dirs)
    assert "secure-boot UEFI firmware (with enrolled keys)" in caught.value.message
    assert "50-secure-no-keys.json: no secure boot with enrolled keys" in caught.value.message
    assert caught.value.hint and "sudo apt-get install ovmf" in caught.value.hint
    assert str(host.usr) in caught.value.hint


def test_builds_vm_desk_cannot_boot_are_skipped(host: Host) -> None:
    host.build("10-i440fx-only.json", machines=["pc-i440fx-*"])
    host.build("20-qcow2.json", fmt="qcow2")
    host.build("30-memory.json", device="memory")
    host.build("40-smm-without-secure-boot.json", features=("requires-smm",))
    host.build("50-secure.json", features=SB)  # secure boot only when asked for
    host.build("55-arm.json", "aarch64")
    missing = host.build("57-gone.json")
    missing[0].unlink()
    host.write("58-broken.json", "{oops")
    host.write("59-bios.json", json.dumps({"interface-types": ["bios"]}))
    wanted = host.build("60-good.json")
    found = firmware.descriptors(host.dirs)
    reasons = {d.name: d.unusable("x86_64", False) for d in found}
    assert reasons == {
        "10-i440fx-only.json": "not for the q35 machine",
        "20-qcow2.json": "not raw flash images",
        "30-memory.json": "not a flash build with a variable store template",
        "40-smm-without-secure-boot.json": "needs SMM, which VM-Desk enables only for secure boot",
        "50-secure.json": "secure boot build",
        "55-arm.json": "not for x86_64",
        "57-gone.json": f"{missing[0]} is missing",
        "59-bios.json": "not UEFI",
        "60-good.json": None,
    }  # 58-broken.json is not JSON, so it is not a descriptor at all
    assert firmware.select("x86_64", False, host.dirs) == wanted


def test_no_firmware_at_all_says_what_to_install(host: Host) -> None:
    with pytest.raises(HostToolMissing) as caught:
        firmware.select("aarch64", False, host.dirs)
    assert caught.value.message == "no UEFI firmware for aarch64 guests is installed"
    assert caught.value.hint and "sudo apt-get install qemu-efi-aarch64" in caught.value.hint


def test_a_tolerant_reader_of_odd_descriptors(host: Host) -> None:
    host.write("10-odd.json", json.dumps({"targets": "x86_64", "features": 3, "mapping": []}))
    host.write("20-list.json", "[1]")
    (odd,) = firmware.descriptors(host.dirs)
    assert (odd.name, odd.targets, odd.features, odd.code, odd.device) == (
        "10-odd.json", {}, (), None, "",
    )  # fmt: skip
    assert odd.unusable("x86_64", False) == "not UEFI"


def test_for_vm_copies_the_template_once(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, template = host.build("60-edk2-x86_64.json")
    monkeypatch.setattr(firmware, "search_dirs", lambda: tuple(host.dirs))
    nvram = tmp_path / "vm.vmdesk" / "nvram"
    first = firmware.for_vm("x86_64", False, nvram)
    assert (first.code, first.vars, first.secure_boot) == (code, nvram / "efivars.fd", False)
    assert first.vars.read_bytes() == template.read_bytes()
    first.vars.write_bytes(b"the guest wrote a variable")
    again = firmware.for_vm("x86_64", False, nvram)
    assert again.vars.read_bytes() == b"the guest wrote a variable"  # never reset


def test_this_hosts_descriptors() -> None:
    """Debian 12 with ovmf and qemu-efi-aarch64 (installed by scripts/setup.sh)."""
    code, template = firmware.select("x86_64", False)
    assert code.is_file() and template.is_file()
    sb_code, _ = firmware.select("x86_64", True)
    assert sb_code != code
    sb = next(d for d in firmware.descriptors() if d.code and d.code.path == sb_code)
    assert {"secure-boot", "enrolled-keys", "requires-smm"} <= set(sb.features)
    assert firmware.select("aarch64", False)[0].is_file()


def test_watch_paths_cover_every_directory_and_descriptor(host: Host) -> None:
    host.build("60-edk2-x86_64.json")
    host.write("10-hidden.json", "", where="etc")
    assert firmware.watch_paths(host.dirs) == [
        host.usr, host.etc, host.usr / "60-edk2-x86_64.json",
    ]  # fmt: skip
    assert firmware.watch_paths()[: len(firmware.search_dirs())] == list(firmware.search_dirs())
