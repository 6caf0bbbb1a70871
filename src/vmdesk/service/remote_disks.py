"""Disks of VMs on a libvirt host: listed as the host's pool describes their volumes, and
new empty ones made in that pool by the host's daemon (nothing crosses the connection)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from vmdesk.core import config as config_model
from vmdesk.core import states
from vmdesk.core.config import Disk
from vmdesk.core.errors import Conflict, VMDeskError
from vmdesk.core.library import Library
from vmdesk.engines.libvirt import connection
from vmdesk.engines.libvirt.host import LibvirtHost
from vmdesk.service import remote
from vmdesk.service.remote_run import connected
from vmdesk.storage.images import ImageInfo
from vmdesk.storage.vm_media import AttachedDisk, Interface


def disks(library: Library, host: str, name: str) -> list[AttachedDisk]:
    with connected(library, host) as conn:
        stored = conn.domain(name).stored
        found = []
        for index, disk in enumerate(stored.config.disks):
            path = stored.files.get(disk.file, disk.file)
            try:
                info, problem = _info(conn, path), ""
            except VMDeskError as exc:
                info, problem = None, exc.message
            entry = config_model.to_dict(stored.config)["disks"][index]
            found.append(AttachedDisk(index, entry, Path(path), info, problem))
    return found


def add(library: Library, host: str, name: str, size: int, fmt: str,
        interface: Interface) -> tuple[Disk, ImageInfo]:  # fmt: skip
    """A new empty disk for the stopped VM, made in the host's pool and attached."""
    with connected(library, host) as conn:
        domain = conn.domain(name)
        if domain.state not in states.ENDED:
            raise Conflict(f"{name} is {domain.state} on host {host}",
                           hint=f"stop it first (`vmdesk stop {host}:{name}`)")  # fmt: skip
        config = domain.stored.config
        taken = {d.file for d in config.disks}
        file = next(f"disks/disk{i}.{fmt}" for i in range(len(taken) + 1)
                    if f"disks/disk{i}.{fmt}" not in taken)  # fmt: skip
        disk = Disk(file=file, format=fmt, interface=interface)
        config.disks.append(disk)
        path = conn.new_volume(remote.volume_name(config, file), size, fmt)
        try:
            files = {**domain.stored.files, file: path}
            conn.redefine(config, remote.placement(conn, config, files))
            return disk, _info(conn, path)
        except BaseException:
            remote.remove_volumes(conn, {file: path})
            raise


def _info(conn: LibvirtHost, path: str) -> ImageInfo:
    with connection.errors(conn.where):
        found = ET.fromstring(conn.conn.storageVolLookupByPath(path).XMLDesc(0))
    kind = found.find("target/format")
    return ImageInfo(path=path, format="raw" if kind is None else kind.get("type", "raw"),
                     virtual_size=int(found.findtext("capacity") or 0),
                     allocated=int(found.findtext("allocation") or 0))  # fmt: skip
