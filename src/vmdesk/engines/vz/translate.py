"""The VM description -> a ``VZVirtualMachineConfiguration``, with no side effects of its own.

Everything goes through ``fw``: on a Mac the merged ``Virtualization`` and ``Foundation``
modules of PyObjC, in tests the recording fake (:mod:`vmdesk.engines.vz.fake`), which also
refuses anything missing from :mod:`vmdesk.engines.vz.api_surface`. What the bundle holds
(the machine identifier, whether the EFI variable store exists) comes in through
:class:`Inputs`; what must be written back comes out in :class:`Translation`. The one thing
the framework itself writes is a new EFI variable store, on a UEFI VM's first start.

PyObjC conventions used here: ``Class.alloc().initX_(...)``; class properties are called as
methods (``VZVirtualMachineConfiguration.maximumAllowedCPUCount()``); an ``NSError **``
out-parameter is passed as None and comes back in a ``(result, error)`` tuple.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmdesk.core.config import Disk, LinuxBoot, UefiBoot, VMConfig
from vmdesk.core.errors import EngineError
from vmdesk.core.layout import Layout
from vmdesk.core.units import MiB, format_size
from vmdesk.engines.vz import capabilities as caps
from vmdesk.engines.vz.capabilities import HostFacts
from vmdesk.integration.ports import GUEST_AGENT_PORT

EFI_VARS = "vz-efivars.fd"  # in the bundle's nvram/, next to QEMU's own variable stores
MACHINE_ID = "vz-machine-identifier.bin"  # in nvram/: a clone's fresh nvram/ is a new machine

# Disk cache modes of the description -> (VZDiskImageCachingMode, VZDiskImageSynchronizationMode)
_CACHE = {
    "auto": ("VZDiskImageCachingModeAutomatic", "VZDiskImageSynchronizationModeFull"),
    "writeback": ("VZDiskImageCachingModeAutomatic", "VZDiskImageSynchronizationModeFull"),
    "writethrough": ("VZDiskImageCachingModeCached", "VZDiskImageSynchronizationModeFull"),
    "none": ("VZDiskImageCachingModeUncached", "VZDiskImageSynchronizationModeFull"),
    "directsync": ("VZDiskImageCachingModeUncached", "VZDiskImageSynchronizationModeFull"),
    "unsafe": ("VZDiskImageCachingModeCached", "VZDiskImageSynchronizationModeNone"),
}


@dataclass(frozen=True)
class Inputs:
    """What translation reads from the bundle and the session, decided by the caller."""

    serial_fds: tuple[int, int] | None = None  # (the guest reads from, the guest writes to)
    # the guest agent's end of a socket pair (the session relays the other end)
    guest_agent_fd: int | None = None
    machine_identifier: bytes | None = None  # as stored in nvram/; None: make one
    nvram_exists: bool = False  # the EFI variable store is already there


@dataclass
class Translation:
    configuration: Any
    machine_identifier: bytes  # to store in nvram/ when it differs from Inputs'
    notes: list[str] = field(default_factory=list)  # adjustments the user should hear of


def efi_vars_path(bundle_dir: Path) -> Path:
    return Layout(bundle_dir).nvram / EFI_VARS


def machine_id_path(bundle_dir: Path) -> Path:
    return Layout(bundle_dir).nvram / MACHINE_ID


def _path(bundle_dir: Path, name: str) -> str:
    path = Path(name).expanduser()
    return str(path if path.is_absolute() else bundle_dir / path)


def _check(config: VMConfig, host: HostFacts) -> None:
    problems = caps.unsupported(config, host)
    qcow2 = [(i, d) for i, d in enumerate(config.disks) if d.format == "qcow2"]
    if qcow2:
        index, disk = qcow2[0]
        raw = str(Path(disk.file).with_suffix(".raw"))
        raise EngineError(
            f"disks[{index}] ({disk.file}) is qcow2; Virtualization.framework reads raw "
            "images only",
            hint=f"convert it: `vmdesk disk convert {disk.file} {raw}`, then `vmdesk disk rm "
            f"{config.name} {index}` and `vmdesk disk attach {config.name} {raw}`; or run "
            f"the VM on QEMU: `vmdesk edit {config.name} --engine qemu`",
        )
    if problems:
        raise EngineError(
            "the vz engine cannot run this VM: " + ", ".join(problems) + " not supported",
            hint=f"run it on QEMU (`vmdesk edit {config.name} --engine qemu`, or auto), or "
            "remove what is not supported",
        )


def _error_text(error: Any) -> str:
    return str(error.localizedDescription()) if error is not None else "unknown error"


def _clamped(config: VMConfig, fw: Any, notes: list[str]) -> tuple[int, int]:
    """CPU count and memory size (bytes) inside the framework's limits for this host."""
    klass = fw.VZVirtualMachineConfiguration
    low_cpu, high_cpu = int(klass.minimumAllowedCPUCount()), int(klass.maximumAllowedCPUCount())
    cpus = min(max(config.cpus, low_cpu), high_cpu)
    if cpus != config.cpus:
        notes.append(
            f"cpus: {config.cpus} is outside this Mac's {low_cpu}..{high_cpu}; using {cpus}"
        )
    low_mem = int(klass.minimumAllowedMemorySize())
    high_mem = int(klass.maximumAllowedMemorySize())
    wanted = config.memory * MiB
    memory = min(max(wanted, low_mem), high_mem)
    memory -= memory % MiB  # VZ wants whole MiB
    if memory != wanted:
        notes.append(
            f"memory: {format_size(wanted)} is outside this Mac's {format_size(low_mem)}.."
            f"{format_size(high_mem)}; using {format_size(memory)}"
        )
    return cpus, memory


def _boot_loader(config: VMConfig, bundle_dir: Path, fw: Any, inputs: Inputs) -> Any:
    boot = config.boot
    if isinstance(boot, LinuxBoot):
        url = fw.NSURL.fileURLWithPath_(_path(bundle_dir, boot.kernel))
        loader = fw.VZLinuxBootLoader.alloc().initWithKernelURL_(url)
        if boot.initrd:
            loader.setInitialRamdiskURL_(fw.NSURL.fileURLWithPath_(_path(bundle_dir, boot.initrd)))
        loader.setCommandLine_(boot.cmdline)
        return loader
    assert isinstance(boot, UefiBoot)
    store_url = fw.NSURL.fileURLWithPath_(str(efi_vars_path(bundle_dir)))
    if inputs.nvram_exists:
        store = fw.VZEFIVariableStore.alloc().initWithURL_(store_url)
    else:
        store, error = fw.VZEFIVariableStore.alloc().initCreatingVariableStoreAtURL_options_error_(
            store_url, 0, None
        )
        if store is None:
            raise EngineError(
                f"could not create the VM's EFI variable store: {_error_text(error)}",
                hint=f"check that {efi_vars_path(bundle_dir).parent} is writable",
            )
    loader = fw.VZEFIBootLoader.alloc().init()
    loader.setVariableStore_(store)
    return loader


def _platform(fw: Any, inputs: Inputs) -> tuple[Any, bytes]:
    identifier = None
    if inputs.machine_identifier is not None:
        identifier = fw.VZGenericMachineIdentifier.alloc().initWithDataRepresentation_(
            inputs.machine_identifier
        )
    if identifier is None:  # first start, or stored data the framework cannot read
        identifier = fw.VZGenericMachineIdentifier.alloc().init()
    platform = fw.VZGenericPlatformConfiguration.alloc().init()
    platform.setMachineIdentifier_(identifier)
    return platform, bytes(identifier.dataRepresentation())


def _disk(bundle_dir: Path, fw: Any, file: str, fmt_read_only: bool, cache: str) -> Any:
    caching, sync = _CACHE[cache]
    url = fw.NSURL.fileURLWithPath_(_path(bundle_dir, file))
    attachment, error = (
        fw.VZDiskImageStorageDeviceAttachment.alloc().initWithURL_readOnly_cachingMode_synchronizationMode_error_(
            url, fmt_read_only, getattr(fw, caching), getattr(fw, sync), None
        )
    )
    if attachment is None:
        raise EngineError(
            f"the disk image {file} cannot be used: {_error_text(error)}",
            hint="check that it exists, is a raw image and is readable (`vmdesk disk info`)",
        )
    return attachment


def _storage(config: VMConfig, bundle_dir: Path, fw: Any) -> list[Any]:
    devices: list[Any] = []
    for disk in config.disks:
        attachment = _disk(bundle_dir, fw, disk.file, disk.read_only, disk.cache)
        devices.append(_storage_device(fw, disk, attachment))
    for cd in config.cdroms:  # an ISO as a read-only USB stick: UEFI boots from it
        attachment = _disk(bundle_dir, fw, cd.file, True, "writeback")
        devices.append(
            fw.VZUSBMassStorageDeviceConfiguration.alloc().initWithAttachment_(attachment)
        )
    return devices


def _storage_device(fw: Any, disk: Disk, attachment: Any) -> Any:
    if disk.interface == "nvme":
        klass = fw.VZNVMExpressControllerDeviceConfiguration
    elif disk.interface == "usb":
        klass = fw.VZUSBMassStorageDeviceConfiguration
    else:
        klass = fw.VZVirtioBlockDeviceConfiguration
    return klass.alloc().initWithAttachment_(attachment)


def _network(config: VMConfig, fw: Any) -> list[Any]:
    devices: list[Any] = []
    for index, nic in enumerate(config.nics):
        if nic.mode == "none":
            continue
        if nic.mode == "nat":
            attachment = fw.VZNATNetworkDeviceAttachment.alloc().init()
        else:
            interfaces = list(fw.VZBridgedNetworkInterface.networkInterfaces())
            names = [str(iface.identifier()) for iface in interfaces]
            if nic.bridge not in names:
                raise EngineError(
                    f"nics[{index}]: {nic.bridge!r} is not an interface macOS can bridge",
                    hint="use one of: " + (", ".join(names) or "(none found)"),
                )
            chosen = interfaces[names.index(nic.bridge)]
            attachment = fw.VZBridgedNetworkDeviceAttachment.alloc().initWithInterface_(chosen)
        device = fw.VZVirtioNetworkDeviceConfiguration.alloc().init()
        device.setAttachment_(attachment)
        if nic.mac is None:
            raise EngineError(
                f"nics[{index}] has no MAC address",
                hint=f"`vmdesk edit {config.name}` assigns one; VM-Desk keeps each NIC's MAC",
            )
        device.setMACAddress_(fw.VZMACAddress.alloc().initWithString_(nic.mac))
        devices.append(device)
    return devices


def _shares(config: VMConfig, fw: Any) -> list[Any]:
    devices: list[Any] = []
    klass = fw.VZVirtioFileSystemDeviceConfiguration
    for share in config.shares:
        ok, error = klass.validateTag_error_(share.tag, None)
        if not ok:
            raise EngineError(
                f"shared folder tag {share.tag!r} is refused: {_error_text(error)}",
                hint="choose a shorter, plainer tag",
            )
        directory = fw.VZSharedDirectory.alloc().initWithURL_readOnly_(
            fw.NSURL.fileURLWithPath_(share.path), share.read_only
        )
        device = klass.alloc().initWithTag_(share.tag)
        device.setShare_(fw.VZSingleDirectoryShare.alloc().initWithDirectory_(directory))
        devices.append(device)
    return devices


def _console(config: VMConfig, fw: Any, inputs: Inputs) -> list[Any]:
    """The virtio console's ports: clipboard sharing (the SPICE agent, served by macOS
    itself, on the port the class names) and the guest agent (qemu-ga, on a socket pair
    whose other end the session relays to the supervisor)."""
    ports = []
    if config.clipboard:
        agent = fw.VZSpiceAgentPortAttachment.alloc().init()
        agent.setSharesClipboard_(True)
        port = fw.VZVirtioConsolePortConfiguration.alloc().init()
        port.setName_(fw.VZSpiceAgentPortAttachment.spiceAgentPortName())
        port.setAttachment_(agent)
        ports.append(port)
    if config.guest_agent and inputs.guest_agent_fd is not None:
        handle = fw.NSFileHandle.alloc().initWithFileDescriptor_(inputs.guest_agent_fd)
        channel = fw.VZFileHandleSerialPortAttachment.alloc()
        channel = channel.initWithFileHandleForReading_fileHandleForWriting_(handle, handle)
        port = fw.VZVirtioConsolePortConfiguration.alloc().init()
        port.setName_(GUEST_AGENT_PORT)
        port.setAttachment_(channel)
        ports.append(port)
    if not ports:
        return []
    console = fw.VZVirtioConsoleDeviceConfiguration.alloc().init()
    for index, port in enumerate(ports):
        # ports() is a VZVirtioConsolePortConfigurationArray: set by index, not replaced
        console.ports().setObject_atIndexedSubscript_(port, index)
    return [console]


def _serial(fw: Any, inputs: Inputs) -> list[Any]:
    if inputs.serial_fds is None:
        return []
    guest_reads, guest_writes = inputs.serial_fds
    attachment = fw.VZFileHandleSerialPortAttachment.alloc()
    attachment = attachment.initWithFileHandleForReading_fileHandleForWriting_(
        fw.NSFileHandle.alloc().initWithFileDescriptor_(guest_reads),
        fw.NSFileHandle.alloc().initWithFileDescriptor_(guest_writes),
    )
    port = fw.VZVirtioConsoleDeviceSerialPortConfiguration.alloc().init()
    port.setAttachment_(attachment)
    return [port]


def translate(
    config: VMConfig, bundle_dir: Path, fw: Any, host: HostFacts, inputs: Inputs
) -> Translation:
    """The whole VM as one validated ``VZVirtualMachineConfiguration``; raises
    :class:`EngineError` naming what the vz engine cannot do for this VM, and with the
    framework's own message when it does not accept the result."""
    _check(config, host)
    notes: list[str] = []
    vm = fw.VZVirtualMachineConfiguration.alloc().init()
    cpus, memory = _clamped(config, fw, notes)
    vm.setCPUCount_(cpus)
    vm.setMemorySize_(memory)
    vm.setBootLoader_(_boot_loader(config, bundle_dir, fw, inputs))
    platform, machine_id = _platform(fw, inputs)
    vm.setPlatform_(platform)
    vm.setStorageDevices_(_storage(config, bundle_dir, fw))
    vm.setNetworkDevices_(_network(config, fw))
    if config.display.device != "none":
        scanout = fw.VZVirtioGraphicsScanoutConfiguration.alloc()
        scanout = scanout.initWithWidthInPixels_heightInPixels_(
            config.display.width, config.display.height
        )
        graphics = fw.VZVirtioGraphicsDeviceConfiguration.alloc().init()
        graphics.setScanouts_([scanout])
        vm.setGraphicsDevices_([graphics])
    if config.input.usb_keyboard:
        vm.setKeyboards_([fw.VZUSBKeyboardConfiguration.alloc().init()])
    if config.input.usb_tablet:
        pointer = fw.VZUSBScreenCoordinatePointingDeviceConfiguration.alloc().init()
        vm.setPointingDevices_([pointer])
    vm.setSerialPorts_(_serial(fw, inputs))
    vm.setDirectorySharingDevices_(_shares(config, fw))
    vm.setConsoleDevices_(_console(config, fw, inputs))
    vm.setEntropyDevices_([fw.VZVirtioEntropyDeviceConfiguration.alloc().init()])
    balloon = fw.VZVirtioTraditionalMemoryBalloonDeviceConfiguration.alloc().init()
    vm.setMemoryBalloonDevices_([balloon])
    ok, error = vm.validateWithError_(None)
    if not ok:
        raise EngineError(
            f"Virtualization.framework refused the VM's configuration: {_error_text(error)}",
            hint="change what it names (`vmdesk edit`), or run the VM on QEMU (--engine qemu)",
        )
    return Translation(vm, machine_id, notes)
