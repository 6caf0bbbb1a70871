"""What the vz engine can run, as data, and which of a VM's features keep it from running.

Pure: the host's facts come in as a :class:`HostFacts` (tests make their own; on a Mac,
:func:`current_host` reads them), so the choice between engines is tested on Linux.

Decisions recorded here:

- No TPM and no USB passthrough: Virtualization.framework offers neither to Linux guests on
  the macOS versions the engine supports (PyObjC marks ``VZUSBPassthroughDevice`` as a much
  later API; it is not used).
- Port forwarding: VZ's NAT has no built-in forwarding and the guest's address is handed out
  by macOS's own DHCP server, so VM-Desk does not forward ports on vz (capability false).
  A VM with forwards runs on QEMU under ``engine: auto``; ``engine: vz`` refuses it, naming
  the feature. A userspace forwarder to the guest's leased address is possible later.
- Save/restore of the machine state: macOS 14 or later on Apple silicon only.
- Clipboard: a SPICE agent port (``VZSpiceAgentPortAttachment``, macOS 13+, which the engine
  requires) shares the clipboard with the guest's spice-vdagent. The guest agent (qemu-ga)
  gets a virtio console port of its own, relayed to the supervisor's guest agent socket.
- No VNC, screenshots or reboot: VZ shows the screen only in a native window of the process
  that owns the VM (``VZVirtualMachineView``, opened by the supervisor on request: see
  :mod:`vmdesk.engines.vz.window`) and has no reset.
"""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from dataclasses import dataclass, field

from vmdesk.engines.base import Capabilities
from vmdesk.engines.vz import api_surface

VIRTUALIZATION_ENTITLEMENT = "com.apple.security.virtualization"
NETWORKING_ENTITLEMENT = "com.apple.vm.networking"  # bridged networking (Apple grants it)

TYPE_CHECKING = False  # the config model (pydantic) only where a VM is looked at in full
if TYPE_CHECKING:
    from vmdesk.core.config import VMConfig


@dataclass(frozen=True)
class HostFacts:
    system: str  # sys.platform: "darwin", "linux"...
    machine: str  # "arm64", "x86_64"
    macos: tuple[int, int] | None = None
    entitlements: frozenset[str] = field(default_factory=frozenset)
    pyobjc: bool = False  # pyobjc-framework-Virtualization importable

    @property
    def save_restore(self) -> bool:
        return (
            self.machine == "arm64"
            and self.macos is not None
            and self.macos >= api_surface.SAVE_RESTORE_SINCE
        )

    @property
    def nvme(self) -> bool:
        return self.macos is not None and self.macos >= api_surface.NVME_SINCE


def _version(text: str) -> tuple[int, int] | None:
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


def interpreter_entitlements(executable: str | None = None) -> frozenset[str]:
    """The entitlements the running Python binary is signed with (macOS; empty if unsure)."""
    import plistlib

    try:
        out = subprocess.run(
            ["codesign", "-d", "--entitlements", "-", "--xml", executable or sys.executable],
            capture_output=True,
            timeout=10,
            check=False,
        ).stdout
        start = out.find(b"<?xml")
        data = plistlib.loads(out[start:]) if start >= 0 else {}
    except (OSError, subprocess.SubprocessError, ValueError):
        return frozenset()
    return frozenset(key for key, value in data.items() if value is True)


@functools.cache
def current_host() -> HostFacts:
    if sys.platform != "darwin":
        return HostFacts(sys.platform, platform.machine())
    import importlib.util

    return HostFacts(
        "darwin",
        platform.machine(),
        _version(platform.mac_ver()[0]),
        interpreter_entitlements(),
        importlib.util.find_spec("Virtualization") is not None,
    )


def capabilities(host: HostFacts) -> Capabilities:
    return Capabilities(
        engine="vz",
        arches=("aarch64",) if host.machine == "arm64" else ("x86_64",),
        accelerators=("vz",),
        pause=True,
        reboot=False,
        screenshot=False,
        vnc=False,
        serial_console=True,
        usb_passthrough=False,
        share_kinds=("virtiofs",),
        snapshots_with_ram=False,
        tpm=False,
        port_forwards=False,
        save_state=host.save_restore,
        window=True,  # VZVirtualMachineView, opened by the supervisor (VzSession.open_window)
        # The SPICE agent port with setSharesClipboard_ (translate._console), when the VM
        # asks for it: macOS shares the clipboard with the guest's spice-vdagent itself.
        clipboard=True,
        # qemu-ga on a virtio console port, relayed by the session to the agent's socket,
        # where the supervisor speaks to it as on QEMU (no SPICE socket: macOS has that one)
        guest_agent=True,
        agent_sockets=True,
    )


_SYSTEMS = {"linux": "Linux", "win32": "Windows", "freebsd": "FreeBSD"}


def host_problem(host: HostFacts) -> str | None:
    """Why this host cannot run the vz engine at all (None: it can)."""
    if host.system != "darwin":
        return (
            "the vz engine (Apple Virtualization.framework) runs only on macOS; this host "
            f"is {_SYSTEMS.get(host.system, host.system)}"
        )
    if host.machine != "arm64":
        return "VM-Desk's vz engine is made for Apple silicon Macs"
    if host.macos is None or host.macos < api_surface.MINIMUM_MACOS:
        need = api_surface.version_text(api_surface.MINIMUM_MACOS)
        return f"the vz engine needs macOS {need} or later"
    if not host.pyobjc:
        return "pyobjc-framework-Virtualization is not installed (pip install 'vmdesk[macos]')"
    if VIRTUALIZATION_ENTITLEMENT not in host.entitlements:
        return (
            f"this Python is not signed with the {VIRTUALIZATION_ENTITLEMENT} entitlement "
            "(see `vmdesk doctor`)"
        )
    return None


def unsupported(config: VMConfig, host: HostFacts) -> list[str]:
    """The VM's features the vz engine cannot give it on ``host``, each named for the user."""
    from vmdesk.core.config import BiosBoot, UefiBoot

    found: list[str] = []
    arch = "aarch64" if host.machine == "arm64" else "x86_64"
    if config.arch != arch:
        found.append(f"{config.arch} guests (VZ runs only the Mac's own architecture)")
    if config.tpm:
        found.append("TPM")
    if config.usb_devices:
        found.append("USB passthrough")
    if any(nic.forwards for nic in config.nics):
        found.append("port forwarding (VZ's NAT has none)")
    if any(nic.boot_order is not None for nic in config.nics):
        found.append("network (PXE) boot")
    if isinstance(config.boot, BiosBoot):
        found.append("BIOS boot")
    if isinstance(config.boot, UefiBoot) and config.boot.secure_boot:
        found.append("secure boot")
    if config.display.device == "ramfb":
        found.append("the ramfb display")
    if any(share.mode == "9p" for share in config.shares):
        found.append("9p shared folders (VZ shares over VirtioFS)")
    if any(disk.format == "qcow2" for disk in config.disks):
        found.append("qcow2 disks (VZ reads raw images only)")
    if any(disk.interface == "nvme" for disk in config.disks) and not host.nvme:
        found.append("NVMe disks (macOS 14 or later)")
    if any(nic.mode == "bridged" for nic in config.nics):
        if config.isolation != "unrestricted":
            found.append("bridged networking (an unrestricted VM only)")
        elif NETWORKING_ENTITLEMENT not in host.entitlements:
            found.append(f"bridged networking (needs the {NETWORKING_ENTITLEMENT} entitlement)")
    return found
