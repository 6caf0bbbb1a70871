"""Rules that depend on this host and on the other VMs of the library (not on the config alone)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from vmdesk.core import macs
from vmdesk.core.config import VMConfig
from vmdesk.core.errors import Problem
from vmdesk.core.host_paths import expand


def _addresses_overlap(a: str, b: str) -> bool:
    wildcard = {"0.0.0.0", "::"}
    return (
        a == b
        or a in wildcard
        or b in wildcard
        or (ipaddress.ip_address(a).is_loopback and ipaddress.ip_address(b).is_loopback)
    )


def host_problems(
    config: VMConfig,
    bundle_dir: Path,
    others: Iterable[VMConfig],
    *,
    host_cpus: int | None = None,
) -> list[Problem]:
    """What stops ``config`` from being added to (or changed in) this host's library."""
    problems: list[Problem] = []
    cpus = host_cpus if host_cpus is not None else (os.cpu_count() or 1)
    if config.cpus > cpus:
        problems.append(
            Problem(
                "cpus",
                f"{config.cpus} vCPUs asked for but this host has {cpus}",
                f"use --cpus {cpus} or fewer",
            )
        )
    for index, share in enumerate(config.shares):
        path = expand(share.path)
        path = path if path.is_absolute() else bundle_dir / path
        if not path.is_dir():
            problems.append(
                Problem(
                    f"shares[{index}].path",
                    f"{share.path} does not exist or is not a directory",
                    "create the folder first, or fix the path",
                )
            )
    other_list = [o for o in others if o.uuid != config.uuid]
    for index, nic in enumerate(config.nics):
        for fwd in nic.forwards:
            for other in other_list:
                for other_nic in other.nics:
                    for theirs in other_nic.forwards:
                        if (
                            theirs.protocol == fwd.protocol
                            and theirs.host_port == fwd.host_port
                            and _addresses_overlap(theirs.host_address, fwd.host_address)
                        ):
                            problems.append(
                                Problem(
                                    f"nics[{index}].forwards",
                                    f"host {fwd.protocol} port {fwd.host_port} is already "
                                    f"forwarded by VM {other.name!r}",
                                    "pick another host port (e.g. --forward tcp:2223:22)",
                                )
                            )
        if nic.mac is not None:
            for other in other_list:
                if any(o.mac == nic.mac for o in other.nics):
                    problems.append(
                        Problem(
                            f"nics[{index}].mac",
                            f"{nic.mac} is already used by VM {other.name!r}",
                            "leave the MAC empty to get a unique one, or choose another",
                        )
                    )
    return problems


def assign_macs(config: VMConfig, others: Iterable[VMConfig]) -> None:
    """Give every NIC without a MAC a stable one, unique across the library."""
    taken = {nic.mac for other in others for nic in other.nics if nic.mac}
    taken |= {nic.mac for nic in config.nics if nic.mac}
    for index, nic in enumerate(config.nics):
        if nic.mac is None:
            nic.mac = macs.generate(f"{config.uuid}/nic{index}", taken)
            taken.add(nic.mac)
