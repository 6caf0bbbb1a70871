"""Pure building blocks of QEMU command lines, shared by every launch.

A real VM (:mod:`vm_argv`) and a throwaway direct-kernel boot (:mod:`boot_argv`: the KVM
probe, the tiny-image tests, the benchmarks) are put together from these, so the probe
boots the board and CPU that VMs get, and option values are escaped in one place. No
config model here: the accelerator code imports this on the CLI's paths.
"""

from __future__ import annotations

from typing import Literal

from vmdesk.core.arch import Arch

Accel = Literal["kvm", "hvf", "tcg"]
ACCELS: tuple[Accel, ...] = ("kvm", "hvf", "tcg")
GICV2_MAX_CPUS = 8  # the virt board's default GICv2 addresses at most 8 CPUs
RAM_BACKEND = "ram0"


def esc(value: object) -> str:
    """QEMU option values keep a literal comma by doubling it."""
    return str(value).replace(",", ",,")


def cpu_model(arch: Arch, accel: Accel) -> str:
    """The CPU model: the host's own under a hypervisor; under emulation the fastest
    model that still runs a generic distro kernel (on aarch64, ``max`` enables pointer
    authentication emulation and boots several times slower than cortex-a72)."""
    if accel != "tcg":
        return "host"
    return "cortex-a72" if arch == "aarch64" else "max"


def machine(
    arch: Arch,
    accel: Accel,
    *,
    secure_boot: bool = False,
    pflash: bool = False,
    cpus: int = 1,
    shared_memory: bool = False,
) -> str:
    """The ``-machine`` value: q35 or virt, plus what the accelerator and firmware need."""
    if arch == "x86_64":
        value = "q35"
        if secure_boot:
            value += ",smm=on"  # OVMF's secure boot guards its variables with SMM
    else:
        value = "virt"
        # Under KVM/HVF the host's GIC decides (v2 is often absent); under TCG the default
        # GICv2 cannot address more than 8 CPUs, so ask for the best available then too.
        if accel != "tcg" or cpus > GICV2_MAX_CPUS:
            value += ",gic-version=max"
    if pflash:
        value += ",pflash0=fw-code,pflash1=fw-vars"
    if shared_memory:
        value += f",memory-backend={RAM_BACKEND}"
    return value


def socket_chardev(name: str, fd: int, *, listening: bool = False) -> str:
    """A ``-chardev`` on an inherited socket: a connected one (a helper's end of a socket
    pair or vhost-user socket), or a listening one that clients may come and go on."""
    value = f"socket,id={name},fd={fd}"
    return value + ",server=on,wait=off" if listening else value


def serial_port(fd: int, log: object | None = None) -> list[str]:
    """The first serial port on an inherited listening socket; with ``log``, QEMU appends
    everything the guest prints there, whether or not anyone is connected."""
    chardev = socket_chardev("serial0", fd, listening=True)
    if log is not None:
        chardev += f",logfile={esc(log)},logappend=on"
    return ["-chardev", chardev, "-serial", "chardev:serial0"]


def qmp_monitor(fd: int) -> list[str]:
    """QMP on an inherited listening socket."""
    return [
        "-chardev", socket_chardev("qmp0", fd, listening=True),
        "-mon", "chardev=qmp0,mode=control",
    ]  # fmt: skip


def share_9p(index: int, tag: str, path: object, read_only: bool) -> list[str]:
    """A host folder as a virtio-9p device the guest mounts by ``tag``."""
    fsdev = f"fsdev{index}"
    options = f"local,id={fsdev},path={esc(path)},security_model=none"
    if read_only:
        options += ",readonly=on"
    return [
        "-fsdev", options,
        "-device", f"virtio-9p-pci,fsdev={fsdev},mount_tag={esc(tag)}",
    ]  # fmt: skip
