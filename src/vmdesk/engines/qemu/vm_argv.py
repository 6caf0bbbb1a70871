"""Pure builder: a VM description in, QEMU's argv out (no file system, no environment).

The caller resolves everything impure first (accelerator, inherited socket fds, firmware
files) into a :class:`Runtime`. Golden files under tests/golden/vm-argv/ pin the output, and
a real QEMU 7.2 launch (tests/unit/test_vm_argv.py, marked ``vm``) checks it is accepted.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from vmdesk.core.config import CdRom, Disk, LinuxBoot, Nic, PortForward, UefiBoot, VMConfig
from vmdesk.core.errors import EngineError
from vmdesk.engines.qemu.disk_io import DiskIO
from vmdesk.engines.qemu.options import (
    RAM_BACKEND,
    Accel,
    cpu_model,
    esc,
    machine,
    qmp_monitor,
    serial_port,
    share_9p,
    socket_chardev,
)
from vmdesk.integration.ports import GUEST_AGENT_PORT, SPICE_AGENT_PORT


@dataclass(frozen=True)
class Firmware:
    """The UEFI images of one VM."""

    code: Path  # read-only UEFI code image, shared by every VM
    vars: Path  # this VM's writable variable store (a copy in the bundle's nvram/)
    secure_boot: bool = False


@dataclass(frozen=True)
class Runtime:
    """Facts the caller resolved (impure) before building: the accelerator, inherited socket
    fds, paths."""

    accel: Accel
    qmp_fd: int
    serial_fd: int | None  # None when config.serial.enabled is False
    vnc_socket: Path | None  # unix socket QEMU creates for VNC; None = no VNC
    firmware: Firmware | None = None  # required when config.boot.kind == "uefi"
    # QEMU appends everything the guest prints here, from the first byte, whether or not
    # anyone is connected to the serial socket yet.
    serial_log: Path | None = None
    tpm_fd: int | None = None  # QEMU's end of a socket pair to this VM's swtpm
    # share tag -> QEMU's end of the vhost-user socket of that share's virtiofsd; shares
    # not named here are served over virtio-9p by QEMU itself
    virtiofs_fds: dict[str, int] = field(default_factory=dict)
    # NIC index -> an inherited tap device already on the NIC's bridge (we had the
    # privilege to create it); other bridged NICs go through qemu-bridge-helper
    tap_fds: dict[int, int] = field(default_factory=dict)
    bridge_helper: Path | None = None
    # NIC index -> QEMU's end of a socket pair to that NAT NIC's passt; NAT NICs not named
    # here use QEMU's built-in slirp
    nat_fds: dict[int, int] = field(default_factory=dict)
    # Listening sockets of the guests' agents' virtio-serial ports (None: no such port)
    guest_agent_fd: int | None = None
    spice_agent_fd: int | None = None
    # per disk (config.disks' order), how its I/O runs here (disk_io.py); missing: unprobed
    disk_io: tuple[DiskIO, ...] = ()


BALLOON_ID = "balloon0"
AHCI_PORTS = 6  # q35's built-in ICH9 AHCI controller: buses ide.0 .. ide.5
XHCI_BUS = "xhci.0"


def build_vm(config: VMConfig, bundle_dir: Path, runtime: Runtime) -> list[str]:
    """The argv after the ``qemu-system-ARCH`` program name (raises :class:`EngineError`
    for what QEMU 7.2 cannot express)."""
    uefi = isinstance(config.boot, UefiBoot)
    secure_boot = isinstance(config.boot, UefiBoot) and config.boot.secure_boot
    virtiofs = _virtiofs_tags(config, runtime)
    board = machine(
        config.arch,
        runtime.accel,
        secure_boot=secure_boot,
        pflash=uefi,
        cpus=config.cpus,
        shared_memory=bool(virtiofs),
    )
    argv = [
        "-nodefaults",
        "-no-user-config",
        "-name", f"{esc(config.name)},debug-threads=on",
        "-uuid", str(config.uuid),
        "-machine", board,
        "-accel", runtime.accel,
        "-cpu", cpu_model(config.arch, runtime.accel),
        "-smp", str(config.cpus),
        "-m", f"{config.memory}M",
    ]  # fmt: skip
    if virtiofs:
        # virtiofsd reads and writes guest memory directly: RAM must be a shareable file
        argv += ["-object", f"memory-backend-memfd,id={RAM_BACKEND},size={config.memory}M,share=on"]
    argv += _firmware(config, runtime)
    argv += _boot(config, bundle_dir)
    argv += _usb(config)
    order = boot_order(config)
    for index, disk in enumerate(config.disks):
        argv += _disk(index, disk, bundle_dir, order.disks[index], runtime, config.cpus)
    argv += _cdroms(config, bundle_dir, order.cdroms)
    for index, nic in enumerate(config.nics):
        argv += _nic(index, nic, runtime, order.nics[index], firmware=order.firmware)
    argv += _network_boot(config, order)
    argv += ["-device", "virtio-rng-pci"]
    # Memory the guest frees goes back to the host (free page reporting), and a live
    # `edit --memory` below the boot size inflates it; the guest takes memory back under
    # pressure rather than run out (deflate-on-oom).
    if config.balloon:
        argv += ["-device", f"virtio-balloon-pci,id={BALLOON_ID},free-page-reporting=on,"
                 "deflate-on-oom=on"]  # fmt: skip
    argv += _tpm(config, runtime)
    argv += _display(config, runtime)
    argv += _shares(config, runtime)
    argv += _agent_ports(runtime)
    argv += _serial(config, runtime)
    argv += qmp_monitor(runtime.qmp_fd)
    return argv


def _tpm(config: VMConfig, runtime: Runtime) -> list[str]:
    """TPM 2.0 through swtpm: CRB on x86_64 (what Windows 11 expects), the TIS sysbus
    device on the aarch64 virt board."""
    if not config.tpm:
        return []
    if runtime.tpm_fd is None:
        raise EngineError("the VM has a TPM but no swtpm was started for it")
    device = "tpm-crb" if config.arch == "x86_64" else "tpm-tis-device"
    return [
        "-chardev", socket_chardev("tpm0-ctrl", runtime.tpm_fd),
        "-tpmdev", "emulator,id=tpm0,chardev=tpm0-ctrl",
        "-device", f"{device},tpmdev=tpm0",
    ]  # fmt: skip


def _path(bundle_dir: Path, file: str) -> Path:
    """Bundle files are stored relative so a moved bundle keeps working (pure: no resolve)."""
    path = Path(file)
    return path if path.is_absolute() else bundle_dir / path


def _bootindex(order: int | None) -> str:
    """Firmware (SeaBIOS, OVMF, AAVMF) boots devices by their ``bootindex``."""
    return f",bootindex={order}" if order is not None else ""


@dataclass(frozen=True)
class BootOrder:
    """Each disk's, CD's and NIC's ``bootindex`` (None: not a boot device)."""

    disks: list[int | None]
    cdroms: list[int | None]
    nics: list[int | None]
    firmware: bool  # booted by firmware (UEFI, BIOS), not a kernel QEMU loads itself

    @property
    def network(self) -> bool:
        """Whether the user asked for network boot (`vmdesk boot-order net`)."""
        return any(order is not None for order in self.nics)


def boot_order(config: VMConfig) -> BootOrder:
    """The order the firmware tries devices in: the user's (`vmdesk boot-order`, `cd
    insert --boot`) if given, else the disks, then the CDs. Every disk and CD gets a
    bootindex so that firmware tries them before anything else: without one, edk2 tries
    PXE and HTTP boot over IPv4 and IPv6 for minutes before it falls back to the disk."""
    disks = [d.boot_order for d in config.disks]
    cdroms = [c.boot_order for c in config.cdroms]
    nics = [n.boot_order if n.mode != "none" else None for n in config.nics]
    firmware = not isinstance(config.boot, LinuxBoot)
    if firmware and not any(o is not None for o in (*disks, *cdroms, *nics)):
        disks = list(range(1, len(disks) + 1))
        cdroms = list(range(len(disks) + 1, len(disks) + len(cdroms) + 1))
    return BootOrder(disks, cdroms, nics, firmware)


def _network_boot(config: VMConfig, order: BootOrder) -> list[str]:
    """Unless asked for, no network boot: edk2's own PXE turned off through its fw_cfg
    switches (the NICs carry no iPXE ROM either, see _nic)."""
    if not isinstance(config.boot, UefiBoot) or order.network:
        return []
    return [
        "-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
        "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n",
    ]  # fmt: skip


def _firmware(config: VMConfig, runtime: Runtime) -> list[str]:
    """UEFI code + variables as pflash block nodes (raw format nodes over file nodes, the
    layout libvirt uses, so QEMU never probes the format of a writable image)."""
    if not isinstance(config.boot, UefiBoot):
        return []
    fw = runtime.firmware
    if fw is None:
        raise EngineError(
            "UEFI boot needs firmware files, and none were given",
            hint="install ovmf (x86_64) or qemu-efi-aarch64 (aarch64), e.g. with `make setup`",
        )
    if fw.secure_boot != config.boot.secure_boot:
        want = "secure-boot" if config.boot.secure_boot else "non-secure-boot"
        raise EngineError(
            f"the VM wants {want} UEFI firmware but was given the other kind",
            hint="pick the firmware with vmdesk.engines.qemu.firmware.for_vm",
        )
    argv = [
        "-blockdev", f"node-name=fw-code-file,driver=file,filename={esc(fw.code)},read-only=on",
        "-blockdev", "node-name=fw-code,driver=raw,file=fw-code-file,read-only=on",
        "-blockdev", f"node-name=fw-vars-file,driver=file,filename={esc(fw.vars)}",
        "-blockdev", "node-name=fw-vars,driver=raw,file=fw-vars-file",
    ]  # fmt: skip
    if fw.secure_boot and config.arch == "x86_64":
        # only SMM code may write the variable flash, or the guest could forge keys
        argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    return argv


def _boot(config: VMConfig, bundle_dir: Path) -> list[str]:
    """Direct kernel boot; UEFI is pflash (above) and BIOS is QEMU's default SeaBIOS."""
    boot = config.boot
    if isinstance(boot, LinuxBoot):
        # -kernel/-initrd/-append take their value verbatim: no comma escaping here
        argv = ["-kernel", str(_path(bundle_dir, boot.kernel))]
        if boot.initrd:
            argv += ["-initrd", str(_path(bundle_dir, boot.initrd))]
        if boot.cmdline:
            argv += ["-append", boot.cmdline]
        return argv
    if boot.kind == "bios" and config.arch != "x86_64":
        raise EngineError("BIOS boot exists only for x86_64 guests", hint="use --boot uefi")
    return []


def _needs_xhci(config: VMConfig) -> bool:
    """One USB controller serves input devices, USB disks and passed-through devices."""
    return (
        config.input.usb_keyboard
        or config.input.usb_tablet
        or bool(config.usb_devices)
        or any(disk.interface == "usb" for disk in config.disks)
    )


def _usb(config: VMConfig) -> list[str]:
    """The xHCI controller, the keyboard/tablet (absolute pointer for VNC), host devices."""
    if not _needs_xhci(config):
        return []
    argv = ["-device", "qemu-xhci,id=xhci"]
    if config.input.usb_keyboard:
        argv += ["-device", f"usb-kbd,bus={XHCI_BUS}"]
    if config.input.usb_tablet:
        argv += ["-device", f"usb-tablet,bus={XHCI_BUS}"]
    for dev in config.usb_devices:
        ids = f"vendorid=0x{esc(dev.vendor_id)},productid=0x{esc(dev.product_id)}"
        argv += ["-device", f"usb-host,bus={XHCI_BUS},{ids}"]
    return argv


def _disk(index: int, disk: Disk, bundle_dir: Path, order: int | None, runtime: Runtime,
          cpus: int) -> list[str]:  # fmt: skip
    """A protocol node (host I/O: aio, O_DIRECT, trims), a format node, and the device."""
    node = f"disk{index}"
    io = runtime.disk_io[index] if index < len(runtime.disk_io) else unprobed(disk)
    ro = ",read-only=on" if disk.read_only else ""
    discard = ",discard=unmap" if disk.discard and not disk.read_only else ""
    zeroes = ",detect-zeroes=unmap" if discard else ""  # written zeroes become holes too
    l2 = f",l2-cache-size={io.l2_cache}" if io.l2_cache and disk.format == "qcow2" else ""
    host = (f"aio={io.aio},cache.direct={'on' if io.direct else 'off'},"
            f"cache.no-flush={'on' if disk.cache == 'unsafe' else 'off'}")  # fmt: skip
    filename = esc(_path(bundle_dir, disk.file))
    fmt = f"node-name={node},driver={disk.format},file={node}-file"
    argv = [
        "-blockdev", f"node-name={node}-file,driver=file,filename={filename},{host}{discard}{ro}",
        "-blockdev", f"{fmt}{discard}{zeroes}{l2}{ro}",
    ]  # fmt: skip
    # write-cache=off on the device is how -blockdev spells the "writethrough" half of the
    # old -drive cache= modes.
    write_cache = ",write-cache=off" if disk.cache in ("writethrough", "directsync") else ""
    common = f"drive={node},id={node}-dev{write_cache}{_bootindex(order)}"
    if disk.interface == "virtio-blk":
        queues = f",num-queues={disk.queues or cpus}"
        if disk.iothread:
            argv += ["-object", f"iothread,id={node}-io"]
            queues += f",iothread={node}-io"
        device = f"virtio-blk-pci,{common}{queues}"
    elif disk.interface == "nvme":
        device = f"nvme,{common},serial=vmdesk-{node}"  # QEMU requires an NVMe serial
    else:
        device = f"usb-storage,{common},bus={XHCI_BUS}"
    return [*argv, "-device", device]


def unprobed(disk: Disk) -> DiskIO:
    """What a disk gets without the host's probes (disk_io.py): QEMU's own defaults, with
    O_DIRECT only where the disk's cache mode names it."""
    return DiskIO(aio="threads", direct=disk.cache in ("none", "directsync"))


def _cdroms(config: VMConfig, bundle_dir: Path, orders: list[int | None]) -> list[str]:
    """Read-only raw images: on q35's built-in AHCI (x86_64), on virtio-scsi (aarch64's virt
    board has no IDE/AHCI controller)."""
    cdroms: list[CdRom] = config.cdroms
    if config.arch == "x86_64" and len(cdroms) > AHCI_PORTS:
        raise EngineError(
            f"{len(cdroms)} CD-ROMs given; an x86_64 VM has room for {AHCI_PORTS}",
            hint="remove some CD-ROMs",
        )
    argv: list[str] = []
    if cdroms and config.arch == "aarch64":
        argv += ["-device", "virtio-scsi-pci,id=scsi0"]
    for index, cd in enumerate(cdroms):
        node = f"cd{index}"
        filename = esc(_path(bundle_dir, cd.file))
        argv += [
            "-blockdev", f"node-name={node}-file,driver=file,filename={filename},read-only=on",
            "-blockdev", f"node-name={node},driver=raw,file={node}-file,read-only=on",
        ]  # fmt: skip
        common = f"drive={node},id={node}-dev{_bootindex(orders[index])}"
        if config.arch == "x86_64":
            argv += ["-device", f"ide-cd,{common},bus=ide.{index}"]
        else:
            argv += ["-device", f"scsi-cd,{common},bus=scsi0.0"]
    return argv


def _hostfwd(fwd: PortForward) -> str:
    """One slirp ``hostfwd`` rule; QEMU 7.2 parses only IPv4 host addresses there."""
    if ipaddress.ip_address(fwd.host_address).version != 4:
        raise EngineError(
            f"port forward {fwd}: QEMU 7.2 cannot forward from an IPv6 address",
            hint="use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)",
        )
    return f"hostfwd={fwd.protocol}:{fwd.host_address}:{fwd.host_port}-:{fwd.guest_port}"


def _nic(index: int, nic: Nic, runtime: Runtime, order: int | None, *, firmware: bool) -> list[str]:
    """A netdev backend (NAT: a passt daemon's socket, or QEMU's slirp; for bridged, a tap
    we opened or the setuid bridge helper) and a virtio NIC: for a firmware boot, without
    its iPXE option ROM unless it is a boot device (so the firmware never waits on a
    network boot nobody asked for)."""
    if nic.mode == "none":
        return []
    netdev = f"net{index}"
    if nic.mode == "bridged":
        if not nic.bridge:
            raise EngineError(
                f"nics[{index}]: bridged networking needs a host bridge",
                hint="name it, e.g. --nic bridged:br0",
            )
        if index in runtime.tap_fds:
            backend = f"tap,id={netdev},fd={runtime.tap_fds[index]}"
        else:
            backend = f"bridge,id={netdev},br={esc(nic.bridge)}"
            if runtime.bridge_helper is not None:
                backend += f",helper={esc(runtime.bridge_helper)}"
    elif index in runtime.nat_fds:  # passt: its forwards are on its own command line
        backend = f"stream,id={netdev},server=off,addr.type=fd,addr.str={runtime.nat_fds[index]}"
    else:
        backend = ",".join([f"user,id={netdev}", *(_hostfwd(f) for f in nic.forwards)])
    device = f"virtio-net-pci,netdev={netdev},id={netdev}-dev"
    if nic.mac:
        device += f",mac={esc(nic.mac)}"
    if firmware:
        device += _bootindex(order) if order is not None else ",romfile="
    return ["-netdev", backend, "-device", device]


def _display(config: VMConfig, runtime: Runtime) -> list[str]:
    """Never a local window: VNC on a unix socket is the only viewer."""
    display = config.display
    argv = ["-display", "none"]
    if display.device == "virtio-gpu":
        argv += ["-device", f"virtio-gpu-pci,xres={display.width},yres={display.height}"]
    elif display.device == "ramfb":
        argv += ["-device", "ramfb"]  # -nodefaults already dropped q35's VGA
    if display.device != "none" and display.vnc and runtime.vnc_socket is not None:
        argv += ["-vnc", f"unix:{esc(runtime.vnc_socket)}"]
    return argv


def has_spice_agent(config: VMConfig) -> bool:
    """The SPICE agent's port: for the clipboard, and for a display that follows the
    viewer's size (which needs a screen)."""
    return config.clipboard or config.display.device != "none"


def _agent_ports(runtime: Runtime) -> list[str]:
    """The guests' agents' channels: virtio-serial ports on listening sockets the
    supervisor connects to. Not QEMU's own qemu-vdagent chardev: it handles text only and
    blocks migration (so live snapshots and suspend) in 7.2. The device ids name the
    ports in QEMU's VSERPORT_CHANGE events (the guest opened or closed one)."""
    ports = [(runtime.guest_agent_fd, "qga0", GUEST_AGENT_PORT),
             (runtime.spice_agent_fd, "vdagent0", SPICE_AGENT_PORT)]  # fmt: skip
    argv: list[str] = []
    for fd, name, port in ports:
        if fd is not None:
            argv += [
                "-chardev", socket_chardev(name, fd, listening=True),
                "-device", f"virtserialport,bus=vser0.0,chardev={name},id={name},name={port}",
            ]  # fmt: skip
    return ["-device", "virtio-serial-pci,id=vser0", *argv] if argv else []


def _virtiofs_tags(config: VMConfig, runtime: Runtime) -> set[str]:
    """Tags of the shares served by a virtiofsd (each must have one)."""
    tags = {share.tag for share in config.shares}
    unknown = set(runtime.virtiofs_fds) - tags
    if unknown:
        raise EngineError(f"virtiofsd sockets were given for unknown shares {sorted(unknown)}")
    for share in config.shares:
        if share.mode == "virtiofs" and share.tag not in runtime.virtiofs_fds:
            raise EngineError(
                f"shared folder {share.tag!r} is VirtioFS, and no virtiofsd was started for it"
            )
    return set(runtime.virtiofs_fds)


def _shares(config: VMConfig, runtime: Runtime) -> list[str]:
    """Host folders: VirtioFS through a virtiofsd per share (its socket inherited), or
    virtio-9p served by QEMU itself."""
    argv: list[str] = []
    for index, share in enumerate(config.shares):
        if not Path(share.path).is_absolute():
            raise EngineError(
                f"shared folder {share.tag!r}: {share.path!r} is not an absolute path",
                hint="give the full path of the host folder",
            )
        fd = runtime.virtiofs_fds.get(share.tag)
        if fd is None:
            argv += share_9p(index, share.tag, share.path, share.read_only)
            continue
        chardev = f"vfs{index}"
        argv += [
            "-chardev", socket_chardev(chardev, fd),
            "-device", f"vhost-user-fs-pci,chardev={chardev},tag={esc(share.tag)},queue-size=1024",
        ]  # fmt: skip
    return argv


def _serial(config: VMConfig, runtime: Runtime) -> list[str]:
    """The first serial port, served on an inherited listening socket."""
    if not config.serial.enabled:
        return []
    if runtime.serial_fd is None:
        raise EngineError(
            "the serial console is on but no socket was passed for it",
            hint="this is a bug in VM-Desk; please report it",
        )
    return serial_port(runtime.serial_fd, runtime.serial_log)
