"""A VM's snapshots (a tree) and disks."""

from __future__ import annotations

from typing import Any

from vmdesk.core.library import Library
from vmdesk.service.library import find, name_of
from vmdesk.storage import images, snapshots, vm_media


def _name(library: Library, ref: str) -> str:
    return name_of(find(library, ref))


def snapshot_tree(library: Library, ref: str) -> dict[str, Any]:
    return snapshots.tree(library, _name(library, ref)).as_dict()


def snapshot_create(
    library: Library, ref: str, name: str | None = None, *, disk_only: bool = False
) -> snapshots.Snapshot:
    """Snapshot every disk (and the RAM of a running VM, unless ``disk_only``)."""
    return snapshots.create(library, _name(library, ref), name, disk_only=disk_only)


def snapshot_revert(library: Library, ref: str, snapshot: str) -> snapshots.Snapshot:
    return snapshots.revert(library, _name(library, ref), snapshot)


def snapshot_delete(library: Library, ref: str, snapshot: str) -> snapshots.Snapshot:
    return snapshots.delete(library, _name(library, ref), snapshot)


def disks(library: Library, ref: str) -> list[dict[str, Any]]:
    """The VM's disks with what their images are (an unreadable one says why)."""
    return [
        {
            "index": d.index,
            **d.disk.model_dump(mode="json"),
            "path": str(d.path),
            "image": d.info.as_dict() if d.info else None,
            "problem": d.problem or None,
        }
        for d in vm_media.disks(library, _name(library, ref))
    ]


def disk_add(
    library: Library,
    ref: str,
    size: int,
    fmt: str = "qcow2",
    interface: vm_media.Interface = "virtio-blk",
) -> dict[str, Any]:
    """A new empty disk in the VM's bundle, attached to it."""
    disk, info = vm_media.add(
        library, _name(library, ref), size, images.parse_format(fmt), interface
    )
    return {**disk.model_dump(mode="json"), "image": info.as_dict()}
