"""A VM's disks and CD-ROMs: add, attach, detach, grow, insert, eject, boot order.

Each change holds the VM's bundle lock, so it is refused while the VM runs (the
supervisor owns the bundle then), and a file it created is removed again if the new
description is refused.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vmdesk.core.bundle import Bundle
from vmdesk.core.errors import Conflict, NotFound, StorageError
from vmdesk.core.host_paths import expand
from vmdesk.core.library import Library, refuse_if_suspended
from vmdesk.storage import images
from vmdesk.storage.images import Format, ImageInfo

TYPE_CHECKING = False  # the config model (pydantic) only where a description is built
if TYPE_CHECKING:
    from vmdesk.core.config import CdRom, Disk, Nic, VMConfig

Interface = Literal["virtio-blk", "nvme", "usb"]
BootFrom = Literal["cd", "disk", "net"]


@dataclass(frozen=True)
class AttachedDisk:
    index: int
    disk: dict[str, Any]  # its entry in the description's JSON form
    path: Path  # resolved against the bundle
    info: ImageInfo | None  # None when the image cannot be read
    problem: str = ""


@dataclass
class Edit:
    """One locked change to a VM: its bundle, description, and files made so far."""

    bundle: Bundle
    config: VMConfig
    created: list[Path] = field(default_factory=list)


@contextlib.contextmanager
def locked(bundle: Bundle, purpose: str) -> Iterator[None]:
    """Own the VM's bundle; a running VM (its supervisor owns it) is refused with a hint."""
    with bundle.lock(purpose, busy_hint="stop the VM first (`vmdesk stop NAME`)"):
        yield


@contextlib.contextmanager
def editing(library: Library, ref: str, purpose: str) -> Iterator[Edit]:
    """The VM's bundle locked and its description; saved (checked) if the block succeeds,
    and the files it created removed if not."""
    bundle = library.find(ref)
    with locked(bundle, purpose):
        refuse_if_suspended(bundle)
        edit = Edit(bundle, bundle.load())
        _finish_adds(edit)
        try:
            yield edit
            library.save_locked(bundle, edit.config)
        except BaseException:
            _forget(edit.created, keep=False)
            raise
    _forget(edit.created, keep=True)  # saved: the new files are the description's now


def _forget(created: list[Path], *, keep: bool) -> None:
    """Drop the markers of the files made; the files too unless ``keep``."""
    for path in created:
        if not keep:
            path.unlink(missing_ok=True)
        _adding_marker(path).unlink(missing_ok=True)


def _adding_marker(path: Path) -> Path:
    """Written before a new disk file is made, removed once the description names it: a
    killed `disk add` leaves the marker, so the file it made is known to be unwanted (a
    disk detached with `disk rm` stays in the bundle too, and must not be taken for one)."""
    return path.with_name(f".{path.name}.adding")


def _finish_adds(edit: Edit) -> None:
    """What a killed add left: its file goes unless the description came to name it."""
    named = {resolved(edit.bundle, disk) for disk in edit.config.disks}
    for marker in edit.bundle.files.disks.glob(".*.adding"):
        made = marker.with_name(marker.name[1 : -len(".adding")])
        if made not in named:
            with contextlib.suppress(FileNotFoundError):
                made.unlink()
        images.sweep_partials(made)  # qemu-img's half a file
        marker.unlink()


def resolved(bundle: Bundle, item: Disk | CdRom) -> Path:
    return resolved_file(bundle, item.file)


def resolved_file(bundle: Bundle, file: str) -> Path:
    """A disk's or CD's file as the description names it, resolved against the bundle."""
    return Path(os.path.normpath(bundle.path / expand(file)))


def disks(library: Library, ref: str) -> list[AttachedDisk]:
    """The VM's disks with what their images are (a bad image is reported, not raised)."""
    bundle = library.find(ref)
    found = []
    for index, disk in enumerate(bundle.load_data()["disks"]):
        path = resolved_file(bundle, disk["file"])
        try:
            found.append(AttachedDisk(index, disk, path, images.inspect(path)))
        except (StorageError, NotFound) as exc:
            found.append(AttachedDisk(index, disk, path, None, exc.message))
    return found


def _free_name(directory: Path, fmt: Format) -> str:
    index = 0
    while (directory / f"disk{index}.{fmt}").exists():
        index += 1
    return f"disk{index}.{fmt}"


def _in_bundle(bundle: Bundle, path: Path) -> str:
    """How the description names ``path``: relative inside the bundle, else absolute."""
    real = Path(os.path.realpath(path))
    root = Path(os.path.realpath(bundle.path))
    return str(real.relative_to(root)) if real.is_relative_to(root) else str(real)


def inside(bundle: Bundle, path: Path) -> bool:
    """Whether ``path`` (symlinks resolved) is a file of the bundle."""
    return not Path(_in_bundle(bundle, path)).is_absolute()


def add(
    library: Library,
    ref: str,
    size: int,
    fmt: Format = "qcow2",
    interface: Interface = "virtio-blk",
) -> tuple[Disk, ImageInfo]:
    """Create a new empty disk in the VM's bundle (``disks/diskN.FMT``) and attach it."""
    with editing(library, ref, "adding a disk") as edit:
        edit.bundle.files.disks.mkdir(exist_ok=True)
        name = _free_name(edit.bundle.files.disks, fmt)
        path = edit.bundle.files.disks / name
        _adding_marker(path).touch()
        edit.created.append(path)
        info = images.create(path, size, fmt)
        from vmdesk.core.config import Disk

        disk = Disk(file=f"disks/{name}", format=fmt, interface=interface)
        edit.config.disks.append(disk)
    return disk, info


def attachable(path: Path) -> tuple[Format, ImageInfo]:
    """The format of an existing image a VM may use (``disk attach``, ``create --disk``,
    ``edit --disk``): a qcow2 or raw file, standalone."""
    info = images.inspect(path)
    if info.format not in images.FORMATS:
        raise StorageError(
            f"{path} is a {info.format} image; VMs use qcow2 or raw",
            hint=f"convert it: `vmdesk disk convert {path} NEW.qcow2`",
        )
    if info.backing_chain:  # QEMU would open those too, past the isolation policy
        raise StorageError(
            f"{path} is an overlay on {info.backing_chain[0]}",
            hint=f"attach a standalone copy: `vmdesk disk convert {path} NEW.qcow2`",
        )
    return ("qcow2" if info.format == "qcow2" else "raw"), info


def attach(
    library: Library,
    ref: str,
    file: Path,
    interface: Interface = "virtio-blk",
    read_only: bool = False,
) -> tuple[Disk, ImageInfo]:
    """Attach an existing image; naming it approves its path for an isolated VM."""
    path = file.expanduser().absolute()
    fmt, info = attachable(path)
    with editing(library, ref, "attaching a disk") as edit:
        for current in edit.config.disks:
            if resolved(edit.bundle, current) == Path(os.path.normpath(path)):
                raise Conflict(f"{path} is already attached", hint="see `vmdesk disk list`")
        named = _in_bundle(edit.bundle, path)
        from vmdesk.core import isolation
        from vmdesk.core.config import Disk

        disk = Disk(file=named, format=fmt, interface=interface, read_only=read_only)
        edit.config.disks.append(disk)
        if Path(named).is_absolute():
            isolation.approve(edit.config, path)
    return disk, info


def _pick(items: Sequence[Disk | CdRom], which: str, bundle: Bundle, kind: str) -> int:
    """An index from a 0-based number, a file name or a path."""
    if which.isdigit() and int(which) < len(items):
        return int(which)
    for index, item in enumerate(items):
        path = resolved(bundle, item)
        if which in (item.file, path.name, str(path)):
            return index
    raise NotFound(
        f"the VM has no {kind} {which!r}",
        hint=f"see `vmdesk {'disk' if kind == 'disk' else 'cd'} list NAME` for its {kind}s",
    )


def pick_disk(bundle: Bundle, config: VMConfig, which: str) -> int:
    """The index of the disk ``which`` names: its 0-based number, file name or path (as
    `vmdesk disk rm` and `vmdesk disk grow` take it)."""
    return _pick(config.disks, which, bundle, "disk")


def detach(library: Library, ref: str, which: str, *, delete: bool = False) -> Path:
    """Detach a disk; with ``delete`` also remove its file if it lives in the bundle.
    Returns the file's path."""
    with editing(library, ref, "detaching a disk") as edit:
        index = _pick(edit.config.disks, which, edit.bundle, "disk")
        disk = edit.config.disks.pop(index)
        path = resolved(edit.bundle, disk)
        if delete:
            if not inside(edit.bundle, path):
                raise StorageError(
                    f"{path} is outside the VM's bundle; VM-Desk deletes only its own files",
                    hint="detach it without --delete and remove the file yourself",
                )
            users = _other_users(library, edit.bundle, path)
            if users:
                raise Conflict(
                    f"{path} is also used by {', '.join(users)}",
                    hint="detach it without --delete",
                )
    if delete:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return path


def _other_users(library: Library, me: Bundle, path: Path) -> list[str]:
    names = []
    for bundle in library.bundles():
        if bundle.path == me.path:
            continue
        with contextlib.suppress(Exception):
            if any(resolved(bundle, d) == path for d in bundle.load().disks):
                names.append(bundle.dir_name.removesuffix(".vmdesk"))
    return names


def grow(library: Library, ref: str, which: str, size: int, *, shrink: bool = False) -> ImageInfo:
    """Resize one of the VM's disks (while the VM is stopped)."""
    with editing(library, ref, "resizing a disk") as edit:
        index = _pick(edit.config.disks, which, edit.bundle, "disk")
        return images.grow(resolved(edit.bundle, edit.config.disks[index]), size, shrink=shrink)


def insert_cd(library: Library, ref: str, iso: Path, *, boot: bool = False) -> CdRom:
    """Attach an ISO read-only as a new CD-ROM drive; ``boot`` boots from it first."""
    path = iso.expanduser().absolute()
    if not path.is_file():
        raise NotFound(f"{path} does not exist", hint="check the path of the ISO image")
    with editing(library, ref, "inserting a CD") as edit:
        named = _in_bundle(edit.bundle, path)
        from vmdesk.core import isolation
        from vmdesk.core.config import CdRom

        cd = CdRom(file=named)
        edit.config.cdroms.append(cd)
        if Path(named).is_absolute():
            isolation.approve(edit.config, path)
        if boot:
            _boot_first(edit.config, "cd")
    return cd


def eject_cd(library: Library, ref: str, which: str | None = None) -> list[str]:
    """Remove one CD-ROM drive (or all of them); returns the ISOs that were in them."""
    with editing(library, ref, "ejecting a CD") as edit:
        if not edit.config.cdroms:
            raise NotFound("the VM has no CD-ROM", hint="nothing to eject")
        if which is None:
            ejected, edit.config.cdroms = edit.config.cdroms, []
        else:
            ejected = [edit.config.cdroms.pop(_pick(edit.config.cdroms, which, edit.bundle, "cd"))]
    return [cd.file for cd in ejected]


def boot_from(library: Library, ref: str, first: BootFrom) -> None:
    """Boot from the CD-ROMs first (installing) or from the disks first."""
    with editing(library, ref, "changing the boot order") as edit:
        _boot_first(edit.config, first)


def _boot_first(config: VMConfig, first: BootFrom) -> None:
    """Number the boot devices: the chosen kind first, then disks, then CDs. Network boot
    only when asked for (the first NIC, then the disks and CDs)."""
    cds: list[Disk | CdRom | Nic] = list(config.cdroms)
    drives: list[Disk | CdRom | Nic] = list(config.disks)
    nics: list[Disk | CdRom | Nic] = []
    nics += [n for n in config.nics if n.mode != "none"][:1]
    if first == "cd" and not cds:
        raise NotFound("the VM has no CD-ROM to boot from", hint="insert one: `vmdesk cd insert`")
    if first == "disk" and not drives:
        raise NotFound("the VM has no disk to boot from", hint="add one: `vmdesk disk add`")
    if first == "net" and not nics:
        raise NotFound("the VM has no network interface to boot from", hint="add one: --nic nat")
    ordered = {"cd": cds + drives, "disk": drives + cds, "net": nics + drives + cds}[first]
    for nic in config.nics:
        nic.boot_order = None  # network boot is only ever the user's explicit choice
    for order, item in enumerate(ordered, start=1):
        item.boot_order = order
