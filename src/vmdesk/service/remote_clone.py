"""Clones of VMs on a libvirt host, made on that host: its daemon copies each volume in its
own pool (nothing crosses the connection), except the cloud-init seed, which is read here,
given the clone's own instance-id, name and MAC, and sent back."""

from __future__ import annotations

import tempfile
from pathlib import Path

from vmdesk.core import states, validation
from vmdesk.core.config import VMConfig
from vmdesk.core.errors import Conflict, Unsupported
from vmdesk.core.library import Library
from vmdesk.engines.libvirt.host import LibvirtHost
from vmdesk.service import image_vms, remote
from vmdesk.service.remote_run import connected


def clone(library: Library, host: str, source: str, name: str, *, linked: bool = False,
          forwards: bool = True) -> VMConfig:  # fmt: skip
    """A new VM ``name`` on ``host`` from its stopped VM ``source`` (new UUID and MACs, a
    fresh NVRAM; the disks' current state, without their snapshots)."""
    from vmdesk.storage.clones import clone_description

    if linked:
        raise Unsupported(
            "linked clones of VMs on libvirt hosts are not made by VM-Desk yet",
            hint="leave out --linked: the host copies the disks in its own pool",
        )
    with connected(library, host) as conn:
        domain = conn.domain(source)
        if domain.state not in states.ENDED:
            raise Conflict(
                f"{source} is {domain.state} on host {host}, and a clone needs a stopped VM",
                hint=f"stop it first (`vmdesk stop {host}:{source}`)",
            )
        conn.refuse_taken(name)
        config = clone_description(domain.stored.config, name, forwards)
        others = [d.stored.config for d in conn.domains()]
        validation.assign_macs(config, others)
        placement = remote.placement(conn, config, _copied(conn, config, domain.stored.files))
        try:
            conn.define(config, placement)
        except BaseException:
            remote.remove_volumes(conn, placement.files)
            raise
    return config


def _copied(conn: LibvirtHost, config: VMConfig, files: dict[str, str]) -> dict[str, str]:
    """Each file of the source, copied for the clone: path on the host by name in the
    description. A failure removes the copies made so far."""
    made: dict[str, str] = {}
    try:
        for file, path in files.items():
            volume = remote.volume_name(config, file)
            if file == image_vms.SEED:
                made[file] = _rekeyed_seed(conn, config, path, volume)
            else:
                made[file] = conn.clone_volume(path, volume)
    except BaseException:
        remote.remove_volumes(conn, made)
        raise
    return made


def _rekeyed_seed(conn: LibvirtHost, config: VMConfig, path: str, volume: str) -> str:
    with tempfile.TemporaryDirectory(prefix="vmdesk-seed-") as scratch:
        bundle = Path(scratch)
        seed = bundle / image_vms.SEED
        seed.parent.mkdir(parents=True)
        with seed.open("wb") as out:
            conn.download(path, out.write)
        image_vms.rekey_seed(bundle, config)
        return conn.upload(seed, volume)[0]
