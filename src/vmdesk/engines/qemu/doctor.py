"""Is this host ready to run VMs with QEMU? Each check says what it found and how to fix it.

Checks are data (the CLI renders a table or JSON), and none of them raises: a doctor that
crashes on a broken host is no use on exactly the hosts that need it.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from vmdesk.core import paths
from vmdesk.core.arch import ARCHES, Arch, host_arch
from vmdesk.core.errors import HostToolMissing, VMDeskError
from vmdesk.engines.checks import Check, Severity
from vmdesk.engines.qemu import binaries
from vmdesk.engines.qemu import firmware as qemu_firmware

MIN_QEMU = (7, 2)
LOW_DISK_BYTES = 5 << 30
VIRTIOFSD_PLACES = (Path("/usr/lib/qemu/virtiofsd"), Path("/usr/libexec/virtiofsd"))
_SWTPM_FIX = "sudo apt-get install swtpm swtpm-tools"
_TCG_SLOW = "VMs run under slower TCG emulation; "


def firmware_descriptors(dirs: Sequence[Path] | None = None) -> list[qemu_firmware.Descriptor]:
    """QEMU's firmware descriptors in effect (see :mod:`vmdesk.engines.qemu.firmware`)."""
    return qemu_firmware.descriptors(dirs)


def firmware_summary(descriptors: list[qemu_firmware.Descriptor], arch: Arch) -> tuple[int, int]:
    """(UEFI builds for ``arch``, of which secure-boot capable)."""
    builds = [d for d in descriptors if d.uefi and d.runs_on(arch)]
    return len(builds), sum(d.secure_boot for d in builds)


def firmware_listing(descriptors: list[qemu_firmware.Descriptor], arch: Arch) -> list[str]:
    """One line per UEFI build for ``arch``, in priority order: descriptor, code file,
    features, and which kind of VM boots with it (or why none can)."""
    plain = qemu_firmware.choose(arch, False, descriptors)
    secure = qemu_firmware.choose(arch, True, descriptors)
    lines = []
    for desc in descriptors:
        if not (desc.uefi and desc.runs_on(arch)):
            continue
        code = str(desc.code.path) if desc.code else f"({desc.device or 'no'} mapping)"
        features = ", ".join(desc.features) or "no features"
        if desc is plain:
            use = "used for UEFI"
        elif desc is secure:
            use = "used for secure boot"
        else:
            use = "unused: " + str(
                desc.unusable(arch, desc.secure_boot) or "a build before it wins"
            )
        lines.append(f"{desc.name}: {code} ({features}) - {use}")
    return lines


def find_virtiofsd() -> Path | None:
    """virtiofsd is rarely on PATH: Debian 12 ships it in /usr/lib/qemu, Fedora in libexec."""
    for candidate in VIRTIOFSD_PLACES:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("virtiofsd")
    return Path(found) if found else None


# -- the checks -----------------------------------------------------------------------


def _qemu(arch: Arch) -> Check:
    name = f"qemu-system-{arch}"
    try:
        binary = binaries.system_binary(arch)
    except HostToolMissing as exc:
        return Check(name, False, f"{name} not found on PATH", exc.hint or "install QEMU")
    found = binaries.version(binary)
    shown = ".".join(map(str, found))
    if found == (0, 0, 0):
        return Check(
            name, False, f"unknown version at {binary} (`{binary} --version` gave no version)",
            f"reinstall QEMU, or check that `{binary} --version` runs",
        )  # fmt: skip
    if found[:2] < MIN_QEMU:
        want = ".".join(map(str, MIN_QEMU))
        return Check(
            name, False, f"{shown} at {binary}",
            f"VM-Desk needs QEMU {want} or newer: upgrade QEMU (Debian 12 or newer ships it)",
        )  # fmt: skip
    return Check(name, True, f"{shown} at {binary}", "")


def _tool(name: str, fix: str, *, severity: Severity, why: str) -> Check:
    found = shutil.which(name)
    if found:
        return Check(name, True, found, "", severity)
    return Check(name, False, f"not found on PATH ({why})", fix, severity)


def _firmware(arch: Arch, firmware_dirs: Sequence[Path] | None) -> Check:
    """UEFI builds for ``arch``: a summary line, then one line per build (see
    :func:`firmware_listing`)."""
    found = firmware_descriptors(firmware_dirs)
    uefi, secure = firmware_summary(found, arch)
    detail = f"{uefi} UEFI builds, {secure} with secure boot"
    fix = f"sudo apt-get install {qemu_firmware.PACKAGE[arch]} (UEFI guests of {arch} need it)"
    if uefi == 0:
        dirs = qemu_firmware.search_dirs() if firmware_dirs is None else firmware_dirs
        shown = ", ".join(str(d) for d in dirs)
        return Check(f"firmware {arch}", False, f"{detail} in {shown}", fix)
    listing = "\n".join(firmware_listing(found, arch))
    if qemu_firmware.choose(arch, False, found) is None:
        return Check(
            f"firmware {arch}", False, f"{detail}, none usable for UEFI boot\n{listing}", fix
        )
    return Check(f"firmware {arch}", True, f"{detail}\n{listing}", "")


def _tcg_fix(reason: str) -> str:
    """What would get KVM back, judged from why it was not chosen."""
    from vmdesk.engines.qemu.accel import ENV_OVERRIDE

    if reason.startswith("requested"):
        return _TCG_SLOW + f"unset {ENV_OVERRIDE} (or pass --accel auto) to use KVM"
    if "permission" in reason:
        return _TCG_SLOW + "run `sudo usermod -aG kvm $USER`, then log out and back in"
    if "does not exist" in reason:
        return _TCG_SLOW + (
            "enable virtualization (VT-x/AMD-V) in the firmware setup, or nested "
            "virtualization in the host's hypervisor, then `sudo modprobe kvm_intel` "
            "(or kvm_amd)"
        )
    return _TCG_SLOW + (
        "enable (nested) virtualization for this host, reboot, and run `vmdesk doctor` again"
    )


def _accelerator(arch: Arch) -> Check:
    from vmdesk.engines.qemu import accel

    name = f"accelerator {arch}"
    try:
        choice = accel.choose(arch)
    except VMDeskError as exc:  # a bad VMDESK_ACCEL, or KVM requested but unusable
        return Check(name, False, str(exc), exc.hint or "unset VMDESK_ACCEL", "warning")
    detail = f"{choice.accel}: {choice.reason}"
    if choice.accel == "tcg" and host_arch() == arch:
        return Check(name, False, detail, _tcg_fix(choice.reason), "warning")
    return Check(name, True, detail, "", "warning")


def _virtiofsd() -> Check:
    found = find_virtiofsd()
    if found:
        return Check("virtiofsd", True, str(found), "", "warning")
    return Check(
        "virtiofsd", False, "not found (needed for VirtioFS shared folders)",
        "sudo apt-get install qemu-system-common (Debian 12), or the virtiofsd package "
        "on newer releases",
        "warning",
    )  # fmt: skip


def _nat() -> Check:
    """What NAT NICs get on this host: passt where it is installed, else QEMU's slirp."""
    from vmdesk.networking import passt

    found = passt.find()
    if found:
        return Check("NAT", True, f"NAT NICs get passt ({found}) where the VM has KVM or HVF, "
                     "slirp under TCG (measured faster there) or where a NIC asks for it",
                     "", "warning")  # fmt: skip
    return Check(
        "NAT", False, "passt not found on PATH: NAT NICs get QEMU's built-in slirp",
        f"`{passt.INSTALL}`: NAT NICs then get passt (with IPv6; what Podman and libvirt "
        "use), from their next start",
        "warning",
    )  # fmt: skip


def _free_disk() -> Check:
    where = paths.library_dir()
    while not where.exists() and where != where.parent:
        where = where.parent  # the library is created on first use; measure where it will be
    free = shutil.disk_usage(where).free
    detail = f"{free / (1 << 30):.1f} GiB free at {where}"
    if free < LOW_DISK_BYTES:
        return Check(
            "free disk", False, detail,
            "free some space there, or set VMDESK_HOME to a directory on a larger disk",
            "warning",
        )  # fmt: skip
    return Check("free disk", True, detail, "", "warning")


def _disk_io() -> Check:
    """What new disks in the library get (engines/qemu/disk_io.py): io_uring, O_DIRECT."""
    from vmdesk.engines.qemu import disk_io

    local = host_arch() or "x86_64"
    io_uring = disk_io.io_uring_usable(binaries.system_binary(local))
    where = paths.library_dir()
    while not where.exists() and where != where.parent:
        where = where.parent
    with tempfile.NamedTemporaryFile(dir=where, prefix=".vmdesk-direct-") as probe:
        probe.write(b"\0" * 4096)
        probe.flush()
        direct = disk_io.direct_io_works(Path(probe.name))
    aio = "io_uring" if io_uring else "native" if direct else "threads"
    detail = f"aio={aio}, {'O_DIRECT' if direct else 'the page cache'} at {where}"
    if io_uring and direct:
        return Check("disk I/O", True, detail, "", "warning")
    fixes = []
    if not io_uring:
        fixes.append("io_uring: a QEMU built with liburing, and `sysctl kernel.io_uring_disabled"
                     "=0` (a container's seccomp profile may block it too)")  # fmt: skip
    if not direct:
        fixes.append("O_DIRECT: a library on a local file system such as ext4, xfs or btrfs "
                     "(set VMDESK_HOME)")  # fmt: skip
    return Check("disk I/O", False, detail, "; ".join(fixes), "warning")


def _safely(name: str, run: Callable[[], Check], severity: Severity = "error") -> Check:
    try:
        return run()
    except VMDeskError as exc:
        return Check(name, False, str(exc), exc.hint or "run `vmdesk --debug doctor`", severity)
    except Exception as exc:  # a doctor reports; it never crashes
        return Check(
            name, False, f"check failed: {type(exc).__name__}: {exc}",
            "run `vmdesk --debug doctor` and report the error", severity,
        )  # fmt: skip


def checks(*, probe_accel: bool = True, firmware_dirs: Sequence[Path] | None = None) -> list[Check]:
    """Every readiness check for this host, in display order.

    ``probe_accel=False`` skips the accelerator, whose first run per host boot may boot a
    probe guest under KVM (seconds, not milliseconds).
    """
    out = [_safely(f"qemu-system-{arch}", functools.partial(_qemu, arch)) for arch in ARCHES]
    out.append(
        _safely(
            "qemu-img",
            functools.partial(
                _tool, "qemu-img", "sudo apt-get install qemu-utils", severity="error",
                why="needed to create VM disks",
            ),
        )
    )  # fmt: skip
    out += [
        _safely(f"firmware {arch}", functools.partial(_firmware, arch, firmware_dirs))
        for arch in ARCHES
    ]
    local = host_arch()
    if probe_accel and local is not None:
        out.append(
            _safely(f"accelerator {local}", functools.partial(_accelerator, local), "warning")
        )
    for tool in ("swtpm", "swtpm_setup"):
        out.append(
            _safely(
                tool,
                functools.partial(
                    _tool, tool, _SWTPM_FIX, severity="warning", why="needed only for a TPM"
                ),
                "warning",
            )
        )
    out.append(_safely("virtiofsd", _virtiofsd, "warning"))
    out.append(_safely("NAT", _nat, "warning"))
    out.append(_safely("free disk", _free_disk, "warning"))
    out.append(_safely("disk I/O", _disk_io, "warning"))
    return out
