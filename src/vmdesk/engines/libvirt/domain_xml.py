"""Pure builder: a VM description in, libvirt domain XML out (no connection, no files).

The caller resolves what only the host knows into a :class:`Placement` first: the domain
type the host offers (``kvm`` or ``qemu``) and where each of the VM's files lives there
(volumes of a storage pool). The description itself travels in the domain's ``<metadata>``
(:mod:`vmdesk.engines.libvirt.metadata`), so every client sees the same VM. Golden files
under tests/golden/domain-xml/ pin the output, and a real libvirtd defines each of them.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field

from vmdesk.core.config import (
    CdRom,
    Disk,
    LinuxBoot,
    Nic,
    PortForward,
    Share,
    UefiBoot,
    VMConfig,
)
from vmdesk.core.errors import EngineError
from vmdesk.engines.libvirt import metadata
from vmdesk.integration.ports import GUEST_AGENT_PORT, SPICE_AGENT_PORT

# vm_argv.py's limits, for the same reasons: q35's AHCI ports, TCG's GICv2
AHCI_PORTS = 6
GICV2_MAX_CPUS = 8


@dataclass(frozen=True)
class Placement:
    """What the host decided: its domain type, and the path there of each file the
    description names relative to its bundle (absolute paths are the host's own)."""

    domain_type: str  # "kvm" or "qemu" (TCG)
    files: Mapping[str, str] = field(default_factory=dict)
    # whether the host's libvirt runs user-mode NICs on passt (its domain capabilities list
    # it; Debian 12's libvirt 9.0 refuses it), which forwards ports itself
    passt: bool = False
    # where the host's libvirt appends what the guest prints on its serial console (None:
    # nowhere; a session daemon's log folder is its user's, unknown from here)
    serial_log: str | None = None


QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"


def build_domain(config: VMConfig, placement: Placement) -> str:
    """The domain XML (raises :class:`EngineError` for what libvirt 9.0 can't express)."""
    domain = ET.Element("domain", type=placement.domain_type)
    _text(domain, "name", config.name)
    _text(domain, "uuid", str(config.uuid))
    domain.append(metadata.element(config, placement.files))
    _text(domain, "memory", str(config.memory), unit="MiB")
    _text(domain, "vcpu", str(config.cpus))
    threads = _iothreads(config)
    if threads:
        _text(domain, "iothreads", str(len(threads)))
    if _virtiofs(config):
        backing = ET.SubElement(domain, "memoryBacking")
        ET.SubElement(backing, "source", type="memfd")
        ET.SubElement(backing, "access", mode="shared")
    domain.append(_os(config, placement))
    domain.append(_features(config, placement))
    domain.append(_cpu(config, placement))
    ET.SubElement(domain, "clock", offset="utc")
    for event, action in (("poweroff", "destroy"), ("reboot", "restart"), ("crash", "destroy")):
        _text(domain, f"on_{event}", action)
    domain.append(_devices(config, placement))
    extra = _forwarding_nics(config, placement)
    if extra:
        # NAT NICs with port forwards on QEMU's slirp: libvirt has no XML for slirp's
        # forwards, so those NICs are given to QEMU directly (libvirt marks the domain
        # "tainted: custom-argv", and keeps it)
        domain.set("xmlns:qemu", QEMU_NS)
        commandline = ET.SubElement(domain, "qemu:commandline")
        for arg in extra:
            ET.SubElement(commandline, "qemu:arg", value=arg)
    ET.indent(domain)
    return ET.tostring(domain, encoding="unicode") + "\n"


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    child = ET.SubElement(parent, tag, attrs)
    child.text = text
    return child


def _host_path(file: str, placement: Placement) -> str:
    if file in placement.files:
        return placement.files[file]
    if file.startswith("/"):
        return file
    raise EngineError(
        f"{file!r} has no place on the host",
        hint="this is a bug in VM-Desk; please report it",
    )


def _os(config: VMConfig, placement: Placement) -> ET.Element:
    """Direct kernel boot, or firmware chosen by libvirt from the host's descriptors (its
    own NVRAM per domain); BIOS is SeaBIOS."""
    boot = config.boot
    os_el = ET.Element("os")
    machine = "q35" if config.arch == "x86_64" else "virt"
    _text(os_el, "type", "hvm", arch=config.arch, machine=machine)
    if isinstance(boot, UefiBoot):
        os_el.set("firmware", "efi")
        firmware = ET.SubElement(os_el, "firmware")
        state = "yes" if boot.secure_boot else "no"
        ET.SubElement(firmware, "feature", enabled=state, name="secure-boot")
        ET.SubElement(firmware, "feature", enabled=state, name="enrolled-keys")
    elif isinstance(boot, LinuxBoot):
        _text(os_el, "kernel", _host_path(boot.kernel, placement))
        if boot.initrd:
            _text(os_el, "initrd", _host_path(boot.initrd, placement))
        if boot.cmdline:
            _text(os_el, "cmdline", boot.cmdline)
    elif config.arch != "x86_64":
        raise EngineError("BIOS boot exists only for x86_64 guests", hint="use --boot uefi")
    return os_el


def _features(config: VMConfig, placement: Placement) -> ET.Element:
    features = ET.Element("features")
    ET.SubElement(features, "acpi")
    if config.arch == "aarch64":
        # the host's GIC under a hypervisor; TCG's default GICv2 addresses only 8 CPUs
        if placement.domain_type != "qemu":
            ET.SubElement(features, "gic", version="host")
        elif config.cpus > GICV2_MAX_CPUS:
            ET.SubElement(features, "gic", version="3")
    elif isinstance(config.boot, UefiBoot) and config.boot.secure_boot:
        ET.SubElement(features, "smm", state="on")  # OVMF guards its variables with SMM
    return features


def _cpu(config: VMConfig, placement: Placement) -> ET.Element:
    """The host's CPU under a hypervisor; under TCG the models vm_argv.py picks, for the
    same reason (aarch64's ``max`` emulates pointer authentication, slowly)."""
    if placement.domain_type != "qemu":
        return ET.Element("cpu", mode="host-passthrough")
    if config.arch == "x86_64":
        return ET.Element("cpu", mode="maximum")
    cpu = ET.Element("cpu", mode="custom", match="exact")
    _text(cpu, "model", "cortex-a72", fallback="forbid")
    return cpu


def _devices(config: VMConfig, placement: Placement) -> ET.Element:
    devices = ET.Element("devices")
    firmware = not isinstance(config.boot, LinuxBoot)
    orders = _boot_orders(config, firmware=firmware)
    threads = _iothreads(config)
    for index, disk in enumerate(config.disks):
        el = _disk(index, disk, placement, orders[("disk", index)], config.cpus)
        if index in threads:
            el.find("driver").set("iothread", str(threads[index]))  # type: ignore[union-attr]
        devices.append(el)
    _cdroms(devices, config, placement, orders)
    if (
        config.input.usb_keyboard
        or config.input.usb_tablet
        or config.usb_devices
        or any(disk.interface == "usb" for disk in config.disks)
    ):
        ET.SubElement(devices, "controller", type="usb", model="qemu-xhci")
    for index, nic in enumerate(config.nics):
        if nic.mode != "none" and not _forwarded_on_slirp(nic, placement):
            devices.append(_nic(index, nic, placement, orders.get(("nic", index)),
                                firmware=firmware))  # fmt: skip
    for share in config.shares:
        devices.append(_share(share))
    for kind in ("tablet", "keyboard"):
        if getattr(config.input, f"usb_{kind}"):
            ET.SubElement(devices, "input", type=kind, bus="usb")
    _display(devices, config)
    _serial(devices, config, placement)
    _agent_channels(devices, config)
    _tpm(devices, config)
    for dev in config.usb_devices:
        hostdev = ET.SubElement(devices, "hostdev", mode="subsystem", type="usb")
        source = ET.SubElement(hostdev, "source")
        ET.SubElement(source, "vendor", id=f"0x{dev.vendor_id}")
        ET.SubElement(source, "product", id=f"0x{dev.product_id}")
    if config.balloon:
        ET.SubElement(devices, "memballoon", model="virtio", autodeflate="on",
                      freePageReporting="on")  # fmt: skip
    else:
        ET.SubElement(devices, "memballoon", model="none")
    rng = ET.SubElement(devices, "rng", model="virtio")
    _text(rng, "backend", "/dev/urandom", model="random")
    return devices


def _iothreads(config: VMConfig) -> dict[int, int]:
    """Disk index -> its own I/O thread (numbered from 1), for virtio-blk disks that ask."""
    wanting = [i for i, d in enumerate(config.disks) if d.interface == "virtio-blk" and d.iothread]
    return {index: n for n, index in enumerate(wanting, start=1)}


def _boot_orders(config: VMConfig, *, firmware: bool) -> dict[tuple[str, int], int | None]:
    """vm_argv.boot_order's rule: the user's order, else for a firmware boot every disk
    and then every CD, so the firmware never tries the network first."""
    orders: dict[tuple[str, int], int | None] = {}
    for index, disk in enumerate(config.disks):
        orders[("disk", index)] = disk.boot_order
    for index, cd in enumerate(config.cdroms):
        orders[("cd", index)] = cd.boot_order
    for index, nic in enumerate(config.nics):
        orders[("nic", index)] = nic.boot_order if nic.mode != "none" else None
    if firmware and all(order is None for order in orders.values()):
        media = [key for key in orders if key[0] != "nic"]
        orders.update({key: n for n, key in enumerate(media, start=1)})
    return orders


def _disk(index: int, disk: Disk, placement: Placement, order: int | None,
          cpus: int) -> ET.Element:  # fmt: skip
    """A file-backed disk: O_DIRECT with native AIO unless the disk says otherwise (the
    host's pool is a real file system), trims passed down, multiqueue virtio-blk."""
    if disk.interface == "nvme":
        raise EngineError(
            f"disks[{index}]: libvirt 9.0 has no NVMe disks",
            hint=f"use virtio-blk for this VM's disk {disk.file} on a libvirt host",
        )
    el = ET.Element("disk", type="file", device="disk")
    cache = "none" if disk.cache == "auto" else disk.cache
    driver = {"name": "qemu", "type": disk.format, "cache": cache}
    if disk.aio != "auto":
        driver["io"] = disk.aio
    elif cache in ("none", "directsync"):
        driver["io"] = "native"
    if disk.discard:
        driver.update(discard="unmap", detect_zeroes="unmap")
    if disk.interface == "virtio-blk":
        driver["queues"] = str(disk.queues or cpus)
    ET.SubElement(el, "driver", driver)
    ET.SubElement(el, "source", file=_host_path(disk.file, placement))
    bus = "virtio" if disk.interface == "virtio-blk" else "usb"
    prefix = "vd" if bus == "virtio" else "sd"
    ET.SubElement(el, "target", dev=f"{prefix}{chr(ord('a') + index)}", bus=bus)
    if disk.read_only:
        ET.SubElement(el, "readonly")
    if order is not None:
        ET.SubElement(el, "boot", order=str(order))
    return el


def _cdroms(devices: ET.Element, config: VMConfig, placement: Placement,
            orders: dict[tuple[str, int], int | None]) -> None:  # fmt: skip
    """Read-only raw images: SATA on q35 (x86_64), virtio-scsi on aarch64's virt board."""
    cdroms: list[CdRom] = config.cdroms
    if config.arch == "x86_64" and len(cdroms) > AHCI_PORTS:
        raise EngineError(
            f"{len(cdroms)} CD-ROMs given; an x86_64 VM has room for {AHCI_PORTS}",
            hint="remove some CD-ROMs",
        )
    bus = "sata" if config.arch == "x86_64" else "scsi"
    if cdroms and bus == "scsi":
        ET.SubElement(devices, "controller", type="scsi", model="virtio-scsi")
    for index, cd in enumerate(cdroms):
        el = ET.SubElement(devices, "disk", type="file", device="cdrom")
        ET.SubElement(el, "driver", name="qemu", type="raw")
        ET.SubElement(el, "source", file=_host_path(cd.file, placement))
        ET.SubElement(el, "target", dev=f"sd{chr(ord('a') + len(config.disks) + index)}",
                      bus=bus)  # fmt: skip
        ET.SubElement(el, "readonly")
        order = orders[("cd", index)]
        if order is not None:
            ET.SubElement(el, "boot", order=str(order))


def _nic(index: int, nic: Nic, placement: Placement, order: int | None, *,
         firmware: bool) -> ET.Element:  # fmt: skip
    """NAT is user-mode networking (on passt where the host has it); bridged joins a bridge
    of the host. No option ROM unless the NIC boots the VM."""
    if nic.mode == "bridged":
        if not nic.bridge:
            raise EngineError(
                f"nics[{index}]: bridged networking needs a host bridge",
                hint="name it, e.g. --nic bridged:br0",
            )
        el = ET.Element("interface", type="bridge")
        ET.SubElement(el, "source", bridge=nic.bridge)
    else:
        el = ET.Element("interface", type="user")
    if nic.mac:
        ET.SubElement(el, "mac", address=nic.mac)
    ET.SubElement(el, "model", type="virtio")
    if nic.mode == "nat" and _on_passt(nic, placement):
        ET.SubElement(el, "backend", type="passt")
        for fwd in nic.forwards:
            el.append(_forward(fwd))
    if order is not None:
        ET.SubElement(el, "boot", order=str(order))
    elif firmware:
        ET.SubElement(el, "rom", enabled="no")
    return el


def _on_passt(nic: Nic, placement: Placement) -> bool:
    if nic.backend == "passt" and not placement.passt:
        raise EngineError(
            "the NIC asks for passt, and this host's libvirt can't run NICs on it",
            hint="set the NIC's backend to auto",
        )
    return placement.passt and nic.backend != "slirp"


def _forwarded_on_slirp(nic: Nic, placement: Placement) -> bool:
    return nic.mode == "nat" and bool(nic.forwards) and not _on_passt(nic, placement)


def _forwarding_nics(config: VMConfig, placement: Placement) -> list[str]:
    """QEMU's own arguments for the NICs :func:`_forwarded_on_slirp` leaves out of the
    devices: a slirp netdev with its forwards, and the virtio NIC on it."""
    firmware = not isinstance(config.boot, LinuxBoot)
    orders = _boot_orders(config, firmware=firmware)
    argv: list[str] = []
    for index, nic in enumerate(config.nics):
        if not _forwarded_on_slirp(nic, placement):
            continue
        netdev = f"vmdesk-net{index}"
        rules = [_hostfwd(fwd) for fwd in nic.forwards]
        device = f"virtio-net-pci,netdev={netdev},id={netdev}-dev"
        if nic.mac:
            device += f",mac={nic.mac}"
        order = orders.get(("nic", index))
        if order is not None:
            device += f",bootindex={order}"
        elif firmware:
            device += ",romfile="
        argv += ["-netdev", ",".join([f"user,id={netdev}", *rules]), "-device", device]
    return argv


def _hostfwd(fwd: PortForward) -> str:
    """One slirp ``hostfwd`` rule; QEMU 7.2 parses only IPv4 host addresses there."""
    if ipaddress.ip_address(fwd.host_address).version != 4:
        raise EngineError(
            f"port forward {fwd}: QEMU's slirp cannot forward from an IPv6 address",
            hint="use 127.0.0.1 (the host only) or 0.0.0.0 (every interface)",
        )
    return f"hostfwd={fwd.protocol}:{fwd.host_address}:{fwd.host_port}-:{fwd.guest_port}"


def _forward(fwd: PortForward) -> ET.Element:
    """A passt forward; an address of every interface is written as none at all."""
    el = ET.Element("portForward", proto=fwd.protocol)
    if fwd.host_address not in ("0.0.0.0", "::"):
        el.set("address", fwd.host_address)
    ET.SubElement(el, "range", start=str(fwd.host_port), to=str(fwd.guest_port))
    return el


def _virtiofs(config: VMConfig) -> bool:
    return any(share.mode == "virtiofs" for share in config.shares)


def _share(share: Share) -> ET.Element:
    """VirtioFS when asked for (libvirt starts the host's virtiofsd, which a host may not
    have), else virtio-9p, which every QEMU serves; the path is the host's own folder."""
    if not share.path.startswith("/"):
        raise EngineError(
            f"shared folder {share.tag!r}: {share.path!r} is not an absolute path",
            hint="give the full path of the folder on the VM's host",
        )
    if share.mode == "virtiofs":
        el = ET.Element("filesystem", type="mount", accessmode="passthrough")
        ET.SubElement(el, "driver", type="virtiofs")
    else:
        el = ET.Element("filesystem", type="mount", accessmode="mapped")
    ET.SubElement(el, "source", dir=share.path)
    ET.SubElement(el, "target", dir=share.tag)
    if share.read_only:
        if share.mode == "virtiofs":
            raise EngineError(
                f"shared folder {share.tag!r}: libvirt 9.0 has no read-only VirtioFS",
                hint="share it over 9p (mode 9p) or make it writable",
            )
        ET.SubElement(el, "readonly")
    return el


def _display(devices: ET.Element, config: VMConfig) -> None:
    """The screen, and VNC on a unix socket of the host: no TCP port is opened there."""
    display = config.display
    if display.device == "none":
        return
    if display.vnc:
        graphics = ET.SubElement(devices, "graphics", type="vnc")
        ET.SubElement(graphics, "listen", type="socket")
    video = ET.SubElement(devices, "video")
    if display.device == "virtio-gpu":
        model = ET.SubElement(video, "model", type="virtio", heads="1", primary="yes")
        ET.SubElement(model, "resolution", x=str(display.width), y=str(display.height))
    else:
        ET.SubElement(video, "model", type="ramfb")


def _serial(devices: ET.Element, config: VMConfig, placement: Placement) -> None:
    """The first serial port on a pty, read through libvirt's console stream, and kept in
    a log on the host (from the first byte, whoever is connected)."""
    if not config.serial.enabled:
        return
    serial = ET.SubElement(devices, "serial", type="pty")
    if config.serial.log and placement.serial_log:
        ET.SubElement(serial, "log", file=placement.serial_log, append="on")
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(devices, "console", type="pty")
    ET.SubElement(console, "target", type="serial", port="0")


def _agent_channels(devices: ET.Element, config: VMConfig) -> None:
    """The guests' agents' ports, on unix sockets libvirt names on the host: qemu-ga's,
    and the SPICE agent's (clipboard and display size), as the QEMU engine gives them. No
    VM-Desk speaks on them on a host yet (capabilities say so); the guest finds its ports."""
    ports = [GUEST_AGENT_PORT] if config.guest_agent else []
    if config.clipboard or config.display.device != "none":
        ports.append(SPICE_AGENT_PORT)
    for port in ports:
        channel = ET.SubElement(devices, "channel", type="unix")
        ET.SubElement(channel, "target", type="virtio", name=port)


def _tpm(devices: ET.Element, config: VMConfig) -> None:
    """TPM 2.0 in the host's swtpm: CRB on x86_64, the TIS sysbus device on aarch64."""
    if not config.tpm:
        return
    model = "tpm-crb" if config.arch == "x86_64" else "tpm-tis-device"
    tpm = ET.SubElement(devices, "tpm", model=model)
    ET.SubElement(tpm, "backend", type="emulator", version="2.0")
