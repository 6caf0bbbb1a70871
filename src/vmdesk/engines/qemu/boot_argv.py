"""Pure builder for a direct-kernel boot of a throwaway guest: the KVM probe, the tiny-image
tests and the benchmarks. A :class:`BootSpec` in, an argv out, no side effects.

It is put together from the same blocks as a real VM's argv (:mod:`options`), so the probe
boots the board and CPU model a VM would get. Golden files under tests/golden/qemu-argv/
pin the output. Sockets are passed in as already-bound file descriptors, so QEMU never
races us to create them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vmdesk.core.arch import Arch
from vmdesk.engines.qemu.options import (
    Accel,
    cpu_model,
    machine,
    qmp_monitor,
    serial_port,
    share_9p,
)


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


def build(spec: BootSpec, endpoints: Endpoints) -> list[str]:
    """The argv after the ``qemu-system-ARCH`` program name."""
    argv = [
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-no-reboot",
        "-machine", machine(spec.arch, spec.accel, cpus=spec.cpus),
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
    argv += serial_port(endpoints.serial_fd, endpoints.serial_log)
    argv += qmp_monitor(endpoints.qmp_fd)
    if spec.nic:
        argv += [
            "-netdev", "user,id=net0",
            "-device", "virtio-net-pci,netdev=net0",
        ]  # fmt: skip
    for index, share in enumerate(spec.shares):
        argv += share_9p(index, share.tag, share.path, share.read_only)
    return argv
