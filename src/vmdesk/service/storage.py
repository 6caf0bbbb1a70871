"""A VM's snapshots (a tree), disks and CD-ROMs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vmdesk.core import hosts
from vmdesk.core.library import Library
from vmdesk.service import snapshots as live
from vmdesk.service.library import find, name_of
from vmdesk.storage import compact, images, snapshots, vm_media
from vmdesk.storage.images import ImageInfo

TYPE_CHECKING = False  # the config model (pydantic) only where a description is built
if TYPE_CHECKING:
    from vmdesk.core.config import CdRom, Disk


def _name(library: Library, ref: str) -> str:
    return name_of(find(library, ref))


# -- snapshots --------------------------------------------------------------------------


def snapshots_of(library: Library, ref: str) -> snapshots.Tree:
    """The VM's snapshots, a tree by parent; ``current`` is the one its disks descend from."""
    return live.tree(library, ref)


def snapshot_tree(library: Library, ref: str) -> dict[str, Any]:
    return snapshots_of(library, ref).as_dict()


def snapshot_create(
    library: Library, ref: str, name: str | None = None, *, disk_only: bool = False
) -> snapshots.Snapshot:
    """Snapshot every disk (and the RAM of a running VM, unless ``disk_only``)."""
    return live.create(library, ref, name, disk_only=disk_only)


def snapshot_revert(library: Library, ref: str, snapshot: str) -> snapshots.Snapshot:
    return live.revert(library, ref, snapshot)


def snapshot_delete(library: Library, ref: str, snapshot: str) -> snapshots.Snapshot:
    return live.delete(library, ref, snapshot)


# -- disks ------------------------------------------------------------------------------


def attached_disks(library: Library, ref: str) -> list[vm_media.AttachedDisk]:
    """The VM's disks with what their images are (an unreadable one says why)."""
    host, name = hosts.split(ref)
    if host is not None:
        from vmdesk.service import remote_disks

        return remote_disks.disks(library, host, name)
    return vm_media.disks(library, _name(library, ref))


def disk_row(d: vm_media.AttachedDisk) -> dict[str, Any]:
    """One attached disk as JSON (`vmdesk disk list --json`, GET /api/vms/NAME/disks)."""
    return {
        "index": d.index,
        **d.disk,
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
    """A new empty disk in the VM's bundle (of a VM on a host, in the host's pool),
    attached to it."""
    host, name = hosts.split(ref)
    if host is not None:
        from vmdesk.service import remote_disks

        return remote_disks.add(library, host, name, size, images.parse_format(fmt), interface)
    return vm_media.add(library, _name(library, ref), size, images.parse_format(fmt), interface)


def disk_attach(
    library: Library,
    ref: str,
    file: Path,
    interface: vm_media.Interface = "virtio-blk",
    read_only: bool = False,
) -> tuple[Disk, ImageInfo]:
    """Attach an existing image (naming it approves it for an isolated VM)."""
    return vm_media.attach(library, _name(library, ref), file, interface, read_only)


def disk_remove(library: Library, ref: str, which: str, *, delete: bool = False) -> Path:
    """Detach a disk (index, file name or path); ``delete`` removes a bundle's own file,
    and a linked-clone base no VM uses any more goes with it."""
    from vmdesk.storage import clones

    path = vm_media.detach(library, _name(library, ref), which, delete=delete)
    if delete:
        clones.sweep_bases(library)
    return path


def disk_grow(
    library: Library, ref: str, which: str, size: int, *, shrink: bool = False
) -> ImageInfo:
    return vm_media.grow(library, _name(library, ref), which, size, shrink=shrink)


def disk_compact(
    library: Library,
    ref: str,
    which: str | None = None,
    *,
    progress: compact.CompactProgress | None = None,
) -> compact.Report:
    """Give the host back the space the stopped VM's disks (or only ``which``) hold in
    zeroed blocks; what the guest reads stays the same (see vmdesk.storage.compact)."""
    return compact.compact(library, _name(library, ref), which, progress)


# -- CD-ROMs and boot order ---------------------------------------------------------------


def cdroms(library: Library, ref: str) -> list[dict[str, Any]]:
    """The VM's CD-ROM drives in the description's JSON form (file, boot order)."""
    return list(find(library, ref).load_data()["cdroms"])


def cd_insert(library: Library, ref: str, iso: Path, *, boot: bool = False) -> CdRom:
    return vm_media.insert_cd(library, _name(library, ref), iso, boot=boot)


def cd_eject(library: Library, ref: str, which: str | None = None) -> list[str]:
    """Remove one CD-ROM drive (index or ISO name), or all; returns the ISOs ejected."""
    return vm_media.eject_cd(library, _name(library, ref), which)


def boot_from(library: Library, ref: str, first: vm_media.BootFrom) -> None:
    vm_media.boot_from(library, _name(library, ref), first)
