"""Bridged NICs: who creates the tap device, decided before anything starts.

With CAP_NET_ADMIN (root, or a granted capability) VM-Desk creates the tap itself, on the
bridge, and hands the hypervisor its fd (see :mod:`vmdesk.networking.taps`). Without it,
QEMU's setuid qemu-bridge-helper can, if the administrator installed it setuid and allowed
the bridge in /etc/qemu/bridge.conf. Anything else is a clear error naming the privilege.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

from vmdesk.core.config import Nic
from vmdesk.core.errors import PolicyViolation

CAP_NET_ADMIN = 12
SYS_NET = Path("/sys/class/net")
BRIDGE_HELPERS = (
    Path("/usr/lib/qemu/qemu-bridge-helper"),  # Debian, Ubuntu
    Path("/usr/libexec/qemu-bridge-helper"),  # Fedora
)
BRIDGE_ACL = Path("/etc/qemu/bridge.conf")


def has_net_admin(status: Path = Path("/proc/self/status")) -> bool:
    """Whether this process holds CAP_NET_ADMIN (effective)."""
    try:
        text = status.read_text()
    except OSError:
        return False
    found = re.search(r"^CapEff:\s*([0-9a-fA-F]+)$", text, re.MULTILINE)
    if found is None:
        return False
    return bool(int(found[1], 16) >> CAP_NET_ADMIN & 1)


def setuid_helper() -> Path | None:
    """QEMU's bridge helper, if it is installed setuid root."""
    for path in BRIDGE_HELPERS:
        try:
            info = path.stat()
        except OSError:
            continue
        if info.st_uid == 0 and info.st_mode & stat.S_ISUID:
            return path
    return None


def _check_bridge(bridge: str, sys_net: Path) -> None:
    if not (sys_net / bridge).exists():
        raise PolicyViolation(
            f"there is no network interface named {bridge!r} on this host",
            hint=f"create the bridge first (`sudo ip link add {bridge} type bridge`, then add "
            "your uplink to it), or name an existing one: `ip -br link show type bridge`",
        )
    if not (sys_net / bridge / "bridge").is_dir():
        raise PolicyViolation(
            f"{bridge!r} is a network interface but not a Linux bridge",
            hint=f"make a bridge and enslave {bridge} to it "
            f"(`sudo ip link add br0 type bridge && sudo ip link set {bridge} master br0`), "
            "then use --nic bridged:br0",
        )


def plan(
    name: str,
    nics: list[Nic],
    *,
    net_admin: bool | None = None,
    helper: Path | None = None,
    sys_net: Path = SYS_NET,
) -> tuple[list[int], Path | None]:
    """(indexes of the NICs that get a tap from us, the bridge helper for the others)."""
    bridged = [i for i, nic in enumerate(nics) if nic.mode == "bridged" and nic.bridge]
    if not bridged:
        return [], None
    for index in bridged:
        _check_bridge(str(nics[index].bridge), sys_net)
    if has_net_admin() if net_admin is None else net_admin:
        return bridged, None
    helper = helper if helper is not None else setuid_helper()
    if helper is None:
        bridge = nics[bridged[0]].bridge
        raise PolicyViolation(
            f"VM {name!r}: bridged networking needs the CAP_NET_ADMIN privilege to put a tap "
            f"device on {bridge!r}, and this user does not have it",
            hint="start the VM as root, or let QEMU's bridge helper do it once for all users: "
            f"`sudo chmod u+s {BRIDGE_HELPERS[0]}` and add `allow {bridge}` to {BRIDGE_ACL}; "
            "or use NAT (`--nic nat`)",
        )
    return [], helper
