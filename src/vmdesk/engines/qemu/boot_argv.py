"""Pure QEMU command-line builder: a boot description in, an argv out, no side effects.

Every option combination is golden-tested (tests/golden/). Sockets are passed in as
already-bound file descriptors, so QEMU never races us to create them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vmdesk.core.arch import Arch

Accel = Literal["kvm", "hvf", "tcg"]
ACCELS: tuple[Accel, ...] = ("kvm", "hvf", "tcg")


@dataclass(frozen=True)
class Share:
    """A host directory exported to the guest over virtio-9p under ``tag``."""

    tag: str
    path: Path
    read_only: bool = False


@dataclass(frozen=True)
class Endpoints:
    """File descriptors of listening unix sockets QEMU serves on (inherited by QEMU)."""

    qmp_fd: int
    serial_fd: int
    serial_log: Path | None = None


@dataclass(frozen=True)
class BootSpec:
    """A direct-kernel boot: what the demo, the tests and the benchmarks run."""

    arch: Arch
    accel: Accel
    kernel: Path
    initrd: Path | None = None
    cmdline: str = ""
    memory_mib: int = 256
    cpus: int = 1
    nic: bool = True
    shares: tuple[Share, ...] = ()


_MACHINE: dict[Arch, str] = {"x86_64": "q35", "aarch64": "virt"}


def cpu_model(arch: Arch, accel: Accel) -> str:
    """The CPU model: the host's own under a hypervisor; under emulation the fastest
    model that still runs a generic distro kernel (on aarch64, ``max`` enables pointer
    authentication emulation and boots several times slower than cortex-a72)."""
    if accel != "tcg":
        return "host"
    return "cortex-a72" if arch == "aarch64" else "max"


def build(spec: BootSpec, endpoints: Endpoints) -> list[str]:
    """The argv after the ``qemu-system-ARCH`` program name."""
    argv = [
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-no-reboot",
        "-machine", _MACHINE[spec.arch],
        "-accel", spec.accel,
        "-cpu", cpu_model(spec.arch, spec.accel),
        "-m", f"{spec.memory_mib}M",
        "-smp", str(spec.cpus),
        "-kernel", str(spec.kernel),
    ]  # fmt: skip
    if spec.initrd is not None:
        argv += ["-initrd", str(spec.initrd)]
    if spec.cmdline:
        argv += ["-append", spec.cmdline]

    serial = f"socket,id=serial0,fd={endpoints.serial_fd},server=on,wait=off"
    if endpoints.serial_log is not None:
        serial += f",logfile={_escape(str(endpoints.serial_log))},logappend=on"
    argv += ["-chardev", serial, "-serial", "chardev:serial0"]
    argv += [
        "-chardev", f"socket,id=qmp0,fd={endpoints.qmp_fd},server=on,wait=off",
        "-mon", "chardev=qmp0,mode=control",
    ]  # fmt: skip

    if spec.nic:
        argv += [
            "-netdev", "user,id=net0",
            "-device", "virtio-net-pci,netdev=net0",
        ]  # fmt: skip
    for index, share in enumerate(spec.shares):
        argv += share_9p(index, share.tag, str(share.path), share.read_only)
    return argv


def share_9p(index: int, tag: str, path: str, read_only: bool) -> list[str]:
    """A host folder as a virtio-9p device the guest mounts by ``tag``."""
    fsdev = f"fsdev{index}"
    options = f"local,id={fsdev},path={_escape(path)},security_model=none"
    if read_only:
        options += ",readonly=on"
    return [
        "-fsdev", options,
        "-device", f"virtio-9p-pci,fsdev={fsdev},mount_tag={_escape(tag)}",
    ]  # fmt: skip


def _escape(value: str) -> str:
    """QEMU option values double a comma to keep it literal."""
    return value.replace(",", ",,")
