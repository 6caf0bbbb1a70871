"""Is this host ready to run VMs with QEMU? Each check says what it found and how to fix it.

Checks are data (the CLI renders a table or JSON); none of them raises.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from vmdesk.core import paths
from vmdesk.core.arch import ARCHES, Arch, host_arch
from vmdesk.core.errors import VMDeskError
from vmdesk.engines.qemu import binaries

FIRMWARE_DIR = Path("/usr/share/qemu/firmware")
_FIRMWARE_PACKAGE: dict[Arch, str] = {"x86_64": "ovmf", "aarch64": "qemu-efi-aarch64"}
_VIRTIOFSD = (Path("/usr/lib/qemu/virtiofsd"), Path("/usr/libexec/virtiofsd"))
LOW_DISK_BYTES = 5 << 30


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    severity: Literal["error", "warning"] = "error"  # warning: a feature degrades, VMs run

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def firmware_descriptors(directory: Path = FIRMWARE_DIR) -> list[dict[str, Any]]:
    """QEMU's firmware descriptor files (docs/interop/firmware.json), unreadable ones skipped."""
    found = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            found.append(data)
    return found


def firmware_summary(descriptors: list[dict[str, Any]], arch: Arch) -> tuple[int, int]:
    """(UEFI builds for ``arch``, of which secure-boot capable)."""
    uefi = secure = 0
    for desc in descriptors:
        targets = desc.get("targets") or []
        if not any(isinstance(t, dict) and t.get("architecture") == arch for t in targets):
            continue
        if "uefi" not in (desc.get("interface-types") or []):
            continue
        uefi += 1
        if "secure-boot" in (desc.get("features") or []):
            secure += 1
    return uefi, secure


def find_virtiofsd() -> Path | None:
    for candidate in _VIRTIOFSD:
        if candidate.is_file():
            return candidate
    found = shutil.which("virtiofsd")
    return Path(found) if found else None


def _qemu(arch: Arch) -> Check:
    name = f"qemu-system-{arch}"
    try:
        binary = binaries.system_binary(arch)
    except VMDeskError as exc:
        return Check(name, False, "not installed", exc.hint or "install QEMU")
    major, minor, micro = binaries.version(binary)
    if (major, minor) < (7, 2):
        return Check(
            name, False, f"{major}.{minor}.{micro} at {binary}",
            "VM-Desk needs QEMU 7.2 or newer: upgrade the qemu-system packages",
        )  # fmt: skip
    return Check(name, True, f"{major}.{minor}.{micro} at {binary}")


def _tool(name: str, package: str, *, severity: Literal["error", "warning"], why: str) -> Check:
    found = shutil.which(name)
    if found:
        return Check(name, True, found)
    return Check(name, False, f"not installed ({why})", f"sudo apt-get install {package}", severity)


def _firmware(arch: Arch, descriptors: list[dict[str, Any]]) -> Check:
    uefi, secure = firmware_summary(descriptors, arch)
    detail = f"{uefi} UEFI builds, {secure} with secure boot"
    if uefi == 0:
        return Check(
            f"firmware {arch}", False, detail,
            f"sudo apt-get install {_FIRMWARE_PACKAGE[arch]} (UEFI guests need it)",
        )  # fmt: skip
    return Check(f"firmware {arch}", True, detail)


def _accelerator(arch: Arch) -> Check:
    from vmdesk.engines.qemu import accel

    choice = accel.choose(arch)
    detail = f"{choice.accel}: {choice.reason}"
    if choice.accel == "tcg" and host_arch() == arch:
        return Check(
            f"accelerator {arch}", False, detail,
            "VMs run under slower TCG emulation; enable virtualization (KVM) on this host "
            "or in its hypervisor for full speed",
            "warning",
        )  # fmt: skip
    return Check(f"accelerator {arch}", True, detail)


def _virtiofsd() -> Check:
    found = find_virtiofsd()
    if found:
        return Check("virtiofsd", True, str(found))
    return Check(
        "virtiofsd", False, "not found (VirtioFS shared folders fall back to 9p)",
        "install qemu-system-common (Debian 12) or the virtiofsd package", "warning",
    )  # fmt: skip


def _free_disk() -> Check:
    where = paths.library_dir()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    detail = f"{free / (1 << 30):.1f} GiB free at {where}"
    if free < LOW_DISK_BYTES:
        return Check(
            "free disk", False, detail,
            "free some space, or set VMDESK_HOME to a larger disk", "warning",
        )  # fmt: skip
    return Check("free disk", True, detail)


def _safely(name: str, run: Callable[[], Check]) -> Check:
    try:
        return run()
    except Exception as exc:  # a doctor reports; it never crashes
        return Check(name, False, f"check failed: {exc}", "run with --debug and report this")


def checks(*, probe_accel: bool = True, firmware_dir: Path = FIRMWARE_DIR) -> list[Check]:
    """Every readiness check for this host, in display order."""
    out = [_safely(f"qemu-system-{arch}", lambda arch=arch: _qemu(arch)) for arch in ARCHES]  # type: ignore[misc]
    out.append(
        _safely("qemu-img", lambda: _tool("qemu-img", "qemu-utils", severity="error", why="disks"))
    )
    descriptors = firmware_descriptors(firmware_dir)
    out += [
        _safely(f"firmware {arch}", lambda arch=arch: _firmware(arch, descriptors))  # type: ignore[misc]
        for arch in ARCHES
    ]
    local = host_arch()
    if probe_accel and local is not None:
        out.append(_safely(f"accelerator {local}", lambda: _accelerator(local)))
    out.append(
        _safely("swtpm", lambda: _tool("swtpm", "swtpm", severity="warning", why="for TPM 2.0"))
    )
    out.append(
        _safely(
            "swtpm_setup",
            lambda: _tool("swtpm_setup", "swtpm-tools", severity="warning", why="for TPM 2.0"),
        )
    )
    out.append(_safely("virtiofsd", _virtiofsd))
    out.append(_safely("free disk", _free_disk))
    return out
