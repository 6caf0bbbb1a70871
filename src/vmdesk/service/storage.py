"""A VM's snapshots (a tree) and disks."""

from __future__ import annotations

from typing import Any

from vmdesk.core.config import Disk
from vmdesk.core.library import Library
from vmdesk.service.library import find, name_of
from vmdesk.storage import images, snapshots, vm_media
from vmdesk.storage.images import ImageInfo


def _name(library: Library, ref: str) -> str:
    return name_of(find(library, ref))


def snapshots_of(library: Library, ref: str) -> snapshots.Tree:
    """The VM's snapshots, a tree by parent; ``current`` is the one its disks descend from."""
    return snapshots.tree(library, _name(library, ref))


def snapshot_tree(library: Library, ref: str) -> dict[str, Any]:
    return snapshots_of(library, ref).as_dict()


def snapshot_create(
    library: Library, ref: str, name: str | None = None, *, disk_only: bool = False
) -> snapshots.Snapshot:
    """Snapshot every disk (and the RAM of a running VM, unless ``disk_only``)."""
    return snapshots.create(library, _name(library, ref), name, disk_only=disk_only)


def snapshot_revert(library: Library, ref: str, snapshot: str) -> snapshots.Snapshot:
    return snapshots.revert(library, _name(library, ref), snapshot)


def snapshot_delete(library: Library, ref: str, snapshot: str) -> snapshots.Snapshot:
    return snapshots.delete(library, _name(library, ref), snapshot)


def attached_disks(library: Library, ref: str) -> list[vm_media.AttachedDisk]:
    """The VM's disks with what their images are (an unreadable one says why)."""
    return vm_media.disks(library, _name(library, ref))


def disk_row(d: vm_media.AttachedDisk) -> dict[str, Any]:
    """One attached disk as JSON (`vmdesk disk list --json`, GET /api/vms/NAME/disks)."""
    return {
        "index": d.index,
        **d.disk.model_dump(mode="json"),
        "path": str(d.path),
        "image": d.info.as_dict() if d.info else None,
        "problem": d.problem or None,
    }


def disk_add(
    library: Library,
    ref: str,
    size: int,
    fmt: str = "qcow2",
    interface: vm_media.Interface = "virtio-blk",
) -> tuple[Disk, ImageInfo]:
    """A new empty disk in the VM's bundle, attached to it."""
    return vm_media.add(library, _name(library, ref), size, images.parse_format(fmt), interface)
