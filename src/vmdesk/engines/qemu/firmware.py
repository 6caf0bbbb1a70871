"""UEFI firmware for a VM: pick a build from QEMU's descriptors, give the VM its own variables."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from vmdesk.core.arch import Arch
from vmdesk.core.errors import HostToolMissing
from vmdesk.engines.qemu.doctor import FIRMWARE_DIR, firmware_descriptors
from vmdesk.engines.qemu.vm_argv import Firmware

_PACKAGE: dict[Arch, str] = {"x86_64": "ovmf", "aarch64": "qemu-efi-aarch64"}


def _flash_files(desc: dict[str, Any]) -> tuple[Path, Path] | None:
    mapping = desc.get("mapping") or {}
    if mapping.get("device") != "flash":
        return None
    code = (mapping.get("executable") or {}).get("filename")
    template = (mapping.get("nvram-template") or {}).get("filename")
    if not code or not template:
        return None
    return Path(code), Path(template)


def select(arch: Arch, secure_boot: bool, directory: Path = FIRMWARE_DIR) -> tuple[Path, Path]:
    """(code, variable template) of the first matching UEFI build, in descriptor order."""
    for desc in firmware_descriptors(directory):
        if "uefi" not in (desc.get("interface-types") or []):
            continue
        if not any(t.get("architecture") == arch for t in desc.get("targets") or []):
            continue
        features = desc.get("features") or []
        if ("secure-boot" in features) != secure_boot:
            continue
        if secure_boot and "enrolled-keys" not in features:
            continue  # secure boot without enrolled keys boots nothing signed
        files = _flash_files(desc)
        if files and files[0].is_file() and files[1].is_file():
            return files
    kind = "secure-boot UEFI" if secure_boot else "UEFI"
    raise HostToolMissing(
        f"no {kind} firmware for {arch} guests is installed",
        hint=f"install it: `sudo apt-get install {_PACKAGE[arch]}` (or `make setup`)",
    )


def for_vm(arch: Arch, secure_boot: bool, nvram_dir: Path) -> Firmware:
    """The firmware for one VM; its variable store is created once from the template."""
    code, template = select(arch, secure_boot)
    variables = nvram_dir / ("efivars-secure.fd" if secure_boot else "efivars.fd")
    if not variables.exists():
        nvram_dir.mkdir(parents=True, exist_ok=True)
        partial = variables.with_suffix(".partial")
        shutil.copyfile(template, partial)
        partial.replace(variables)
    return Firmware(code=code, vars=variables, secure_boot=secure_boot)
