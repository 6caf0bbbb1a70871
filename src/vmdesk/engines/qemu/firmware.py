"""UEFI firmware for a VM: pick a build from QEMU's descriptors, give the VM its own variables.

Firmware packages describe each build they install with a JSON file (QEMU's
docs/interop/firmware.json). The files are searched for in several directories, from the
most general (the distribution's) to the most specific (the administrator's, then the
user's); a file in a more specific directory replaces the same-named file of a more general
one, and an empty file hides it. The merged list is sorted by file name, and the first
build that fits wins, so the numeric prefixes (``40-``, ``60-``...) are priorities.
No firmware path is hard-coded: the descriptors name the files.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vmdesk.core.arch import Arch
from vmdesk.core.errors import HostToolMissing

if TYPE_CHECKING:
    from vmdesk.engines.qemu.vm_argv import Firmware

# General to specific. The Homebrew prefixes (Apple silicon, then Intel Macs and Linux
# installs from source) play the part of /usr/share on hosts whose QEMU lives there.
SYSTEM_DIRS: tuple[Path, ...] = (
    Path("/usr/share/qemu/firmware"),
    Path("/opt/homebrew/share/qemu/firmware"),
    Path("/usr/local/share/qemu/firmware"),
    Path("/etc/qemu/firmware"),
)
PACKAGE: dict[Arch, str] = {"x86_64": "ovmf", "aarch64": "qemu-efi-aarch64"}
# The machine types VM-Desk runs, as QEMU 7.2 (the oldest supported) names them; a
# descriptor's target patterns must match one of them.
_MACHINES: dict[Arch, tuple[str, ...]] = {
    "x86_64": ("q35", "pc-q35-7.2"),
    "aarch64": ("virt", "virt-7.2"),
}


def search_dirs() -> tuple[Path, ...]:
    """Where descriptors are looked for, general to specific (the user's directory last)."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return (*SYSTEM_DIRS, Path(config_home) / "qemu" / "firmware")


def descriptor_files(dirs: Sequence[Path] | None = None) -> list[Path]:
    """The descriptor files in effect, in priority order (by file name).

    A same-named file in a later (more specific) directory replaces an earlier one; an
    empty file hides the name altogether.
    """
    chosen: dict[str, Path] = {}
    for directory in search_dirs() if dirs is None else dirs:
        try:
            found = [p for p in directory.iterdir() if p.name.endswith(".json")]
        except OSError:  # absent, not a directory, unreadable
            continue
        for path in found:
            chosen[path.name] = path
    out = []
    for name in sorted(chosen):
        try:
            if chosen[name].stat().st_size == 0:
                continue  # an empty file masks the less specific one
        except OSError:
            continue
        out.append(chosen[name])
    return out


def watch_paths(dirs: Sequence[Path] | None = None) -> list[Path]:
    """What a cached launch plan of a UEFI VM depends on besides the chosen images: every
    search directory (a directory's signature changes when a descriptor is added, removed
    or renamed in it, or when it appears) and every descriptor file in effect (an edit)."""
    return [*(search_dirs() if dirs is None else dirs), *descriptor_files(dirs)]


def _strings(value: object) -> tuple[str, ...]:
    """A descriptor's list field, tolerating a malformed one (hand-edited files exist)."""
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _mapping(value: object, key: str) -> dict[str, object]:
    if isinstance(value, dict):
        found = value.get(key)
        if isinstance(found, dict):
            return found
    return {}


@dataclass(frozen=True)
class FlashFile:
    """One file a flash-mapped build names: its path and block format."""

    path: Path
    format: str


@dataclass(frozen=True)
class Descriptor:
    """One firmware descriptor, read tolerantly: missing or malformed fields are empty."""

    name: str  # the file name, which orders descriptors
    path: Path
    description: str
    interfaces: tuple[str, ...]
    targets: dict[str, tuple[str, ...]]  # architecture -> machine type patterns
    features: tuple[str, ...]
    device: str
    code: FlashFile | None  # the flash images, for device == "flash"
    template: FlashFile | None

    @property
    def uefi(self) -> bool:
        return "uefi" in self.interfaces

    @property
    def secure_boot(self) -> bool:
        return "secure-boot" in self.features

    @property
    def enrolled_keys(self) -> bool:
        return "enrolled-keys" in self.features

    def runs_on(self, arch: Arch) -> bool:
        """Does a target of this build name ``arch`` (whatever the machine types)?"""
        return arch in self.targets

    def unusable(self, arch: Arch, secure_boot: bool) -> str | None:
        """Why VM-Desk cannot boot a VM of ``arch`` (secure boot or not) with this build;
        None when it can."""
        if not self.uefi:
            return "not UEFI"
        if not self.runs_on(arch):
            return f"not for {arch}"
        patterns = self.targets[arch]
        if not any(fnmatch.fnmatchcase(m, p) for p in patterns for m in _MACHINES[arch]):
            return f"not for the {_MACHINES[arch][0]} machine"
        if secure_boot and not (self.secure_boot and self.enrolled_keys):
            # secure boot without enrolled keys boots nothing signed
            return "no secure boot with enrolled keys"
        if not secure_boot and self.secure_boot:
            return "secure boot build"
        if not secure_boot and "requires-smm" in self.features:
            return "needs SMM, which VM-Desk enables only for secure boot"
        if self.device != "flash" or self.code is None or self.template is None:
            return "not a flash build with a variable store template"
        if self.code.format != "raw" or self.template.format != "raw":
            return "not raw flash images"
        for file in (self.code, self.template):
            if not file.path.is_file():
                return f"{file.path} is missing"
        return None


def _flash_file(mapping: dict[str, object], key: str) -> FlashFile | None:
    entry = _mapping(mapping, key)
    filename = entry.get("filename")
    if not isinstance(filename, str) or not filename:
        return None
    fmt = entry.get("format", "raw")
    return FlashFile(Path(filename), fmt if isinstance(fmt, str) else "")


def parse(path: Path, data: dict[str, object]) -> Descriptor:
    """A descriptor from its JSON object (no field is required)."""
    targets: dict[str, tuple[str, ...]] = {}
    raw_targets = data.get("targets")
    for target in raw_targets if isinstance(raw_targets, list) else []:
        if isinstance(target, dict) and isinstance(target.get("architecture"), str):
            arch = target["architecture"]
            targets[arch] = targets.get(arch, ()) + _strings(target.get("machines"))
    mapping = _mapping(data, "mapping")
    device = mapping.get("device")
    description = data.get("description")
    return Descriptor(
        name=path.name,
        path=path,
        description=description if isinstance(description, str) else "",
        interfaces=_strings(data.get("interface-types")),
        targets=targets,
        features=_strings(data.get("features")),
        device=device if isinstance(device, str) else "",
        code=_flash_file(mapping, "executable"),
        template=_flash_file(mapping, "nvram-template"),
    )


def descriptors(dirs: Sequence[Path] | None = None) -> list[Descriptor]:
    """The descriptors in effect, in priority order; unreadable or non-object files are
    skipped (a doctor must not crash on one bad file)."""
    found = []
    for path in descriptor_files(dirs):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            found.append(parse(path, data))
    return found


def choose(arch: Arch, secure_boot: bool, found: Sequence[Descriptor]) -> Descriptor | None:
    """The first usable build in priority order, or None."""
    return next((d for d in found if d.unusable(arch, secure_boot) is None), None)


def select(arch: Arch, secure_boot: bool, dirs: Sequence[Path] | None = None) -> tuple[Path, Path]:
    """(code, variable template) of the build a VM of ``arch`` boots with."""
    found = descriptors(dirs)
    desc = choose(arch, secure_boot, found)
    if desc is not None and desc.code is not None and desc.template is not None:
        return desc.code.path, desc.template.path
    kind = "secure-boot UEFI firmware (with enrolled keys)" if secure_boot else "UEFI firmware"
    searched = ", ".join(str(d) for d in (search_dirs() if dirs is None else dirs))
    near = [
        f"{d.name}: {reason}"
        for d in found
        if d.uefi and d.runs_on(arch) and (reason := d.unusable(arch, secure_boot))
    ]
    detail = f" (found but unusable: {'; '.join(near)})" if near else ""
    raise HostToolMissing(
        f"no {kind} for {arch} guests is installed{detail}",
        hint=f"install it: `sudo apt-get install {PACKAGE[arch]}` (or `make setup`); "
        f"VM-Desk reads QEMU's firmware descriptors in {searched}",
    )


def for_vm(arch: Arch, secure_boot: bool, nvram_dir: Path) -> Firmware:
    """The firmware for one VM; its variable store is created once from the template."""
    from vmdesk.engines.qemu.vm_argv import Firmware

    code, template = select(arch, secure_boot)
    variables = nvram_dir / ("efivars-secure.fd" if secure_boot else "efivars.fd")
    if not variables.exists():
        nvram_dir.mkdir(parents=True, exist_ok=True)
        partial = variables.with_suffix(".partial")
        shutil.copyfile(template, partial)
        partial.replace(variables)
    return Firmware(code=code, vars=variables, secure_boot=secure_boot)
