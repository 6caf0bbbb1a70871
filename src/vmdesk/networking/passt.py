"""NAT through passt: the user-mode network daemon Podman, libvirt and Lima use.

passt hands the guest its addresses (IPv4 by DHCP, IPv6 by NDP and DHCPv6) and carries
its connections out through ordinary sockets of the host, with no privilege. QEMU 7.2
talks to it over a stream socket (``-netdev stream``). Where passt is not installed, or
a NIC asks for slirp, NAT is QEMU's built-in slirp (``-netdev user``).

Pure except :func:`find` and :func:`choose` (which look passt up on PATH): no engine
imports here (tests/unit/test_layers.py).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vmdesk.core.config import Nic, PortForward
from vmdesk.core.errors import HostToolMissing

Backend = Literal["passt", "slirp"]
# The guest's IPv4 address and gateway are slirp's (10.0.2.2 is the host, as on slirp), so
# a guest sees the same addresses on either backend. DNS is the host's own resolvers, which
# passt hands out (slirp's forwarder at 10.0.2.3 is not there: passt 0.0~git20230309's
# --dns-forward rewrites every answer from the host's first resolver to come from the
# forwarder's address, so a guest asking that resolver directly hears nothing back). IPv6
# is passt's own: the host's prefix and routes, by NDP and DHCPv6.
GUEST_IPV4 = "10.0.2.15"
PREFIX_IPV4 = 24
GATEWAY_IPV4 = "10.0.2.2"
PROGRAM = "passt"
INSTALL = "sudo apt-get install passt"  # Debian 12 and newer, Ubuntu 22.04 and newer
# Bench P22 (two desktop guests under TCG, iperf3): data into the guest ran at ~100 Mbit/s
# through passt against ~620 through slirp (out of the guest, 1.1x slirp's), so a guest
# under emulation gets slirp unless its NIC asks for passt.
EMULATED_SLOWER = ("under TCG emulation passt carried data into the guest at a sixth of "
                   "slirp's rate here (bench P22); `--nic nat:passt` uses it anyway")  # fmt: skip


def find(path: str | None = None) -> Path | None:
    """passt on ``path`` (default: the PATH of this process), or None."""
    found = shutil.which(PROGRAM, path=path)
    return Path(found) if found else None


def places(path: str | None = None) -> list[Path]:
    """Where passt would be found on ``path`` (default: PATH): installing or removing it
    at any of these changes what "auto" NICs get."""
    search = os.environ.get("PATH", os.defpath) if path is None else path
    return [Path(d or ".") / PROGRAM for d in search.split(os.pathsep)]


@dataclass(frozen=True)
class Choice:
    """What one NAT NIC runs on, and why."""

    backend: Backend
    reason: str
    binary: Path | None = None  # passt's program, when it is the backend


def choose(
    index: int, nic: Nic, passt: Path | None, vm: str = "", *, emulated: bool = False
) -> Choice:
    """The backend of a NAT NIC: passt where it is installed ("auto") or asked for, else
    slirp; "auto" under emulation (TCG) is slirp, measured faster there (EMULATED_SLOWER).
    A NIC that asks for passt on a host without it is refused."""
    if nic.backend == "slirp":
        return Choice("slirp", "asked for in the description")
    if nic.backend == "auto" and emulated and passt is not None:
        return Choice("slirp", EMULATED_SLOWER)
    if passt is not None:
        why = "asked for" if nic.backend == "passt" else "installed"
        return Choice("passt", f"{why}: {passt}", passt)
    if nic.backend == "passt":
        where = f"{vm}.vmdesk/config.json" if vm else "the VM's description"
        raise HostToolMissing(
            f"nics[{index}] asks for passt NAT, and passt was not found on PATH",
            hint=f"install it (`{INSTALL}`), or set nics[{index}].backend to "
            f'"auto" or "slirp" in {where}',
        )
    return Choice("slirp", f"passt is not installed (`{INSTALL}`)")


def forward_spec(fwd: PortForward) -> str:
    """One passt forward: ``ADDRESS/HOST_PORT:GUEST_PORT``, bound where the forward says
    (127.0.0.1: this machine only; 0.0.0.0: every IPv4 interface; IPv6 works too)."""
    address = ipaddress.ip_address(fwd.host_address)
    return f"{address}/{fwd.host_port}:{fwd.guest_port}"


def argv(
    binary: Path | str,
    forwards: Sequence[PortForward],
    *,
    fd: int | None = None,
    socket: Path | None = None,
    pid_file: Path | None = None,
    quiet: bool = True,
) -> list[str]:
    """passt's command line: in the foreground (its parent sees it die), talking to QEMU on
    an inherited connected socket ``fd`` (it exits when QEMU closes it) or on a listening
    unix ``socket`` it creates; the guest's IPv4 network as slirp's (see GUEST_IPV4), IPv6
    on (passt's default); one ``-t``/``-u`` per TCP/UDP forward."""
    if (fd is None) == (socket is None):
        raise ValueError("passt talks to QEMU on exactly one of an fd and a socket path")
    out = [str(binary), "--foreground"]
    if quiet:  # warnings and errors only: no lines about every address it hands out
        out.append("--quiet")
    out += ["--fd", str(fd)] if fd is not None else ["--socket", str(socket)]
    if pid_file is not None:
        out += ["--pid", str(pid_file)]
    out += ["--address", GUEST_IPV4, "--netmask", str(PREFIX_IPV4), "--gateway", GATEWAY_IPV4]
    for fwd in forwards:
        out += ["-t" if fwd.protocol == "tcp" else "-u", forward_spec(fwd)]
    return out
