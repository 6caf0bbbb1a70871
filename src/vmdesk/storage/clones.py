"""Clones of a stopped VM: full (its own copy of every disk) or linked (qcow2 overlays on
read-only bases shared with the source).

A linked clone freezes each of the source's disks into a base in the library's
``.bases/`` (a hard link, so no data moves), then gives the source and the clone each a
fresh overlay on it. Bases are never written again (mode 0444, opened read-only by
QEMU); how many overlays use one is worked out from the images' backing chains, and
:func:`sweep_bases` deletes a base once nothing uses it. Every step keeps the source
usable if the process is killed: the source's disk is replaced by its overlay in one
rename, and a half-made clone stays in a private staging directory the library sweeps.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vmdesk.core import layout
from vmdesk.core.bundle import Bundle
from vmdesk.core.errors import ConfigError, Conflict, NotFound, StorageError, VMDeskError
from vmdesk.core.library import Library, refuse_if_suspended
from vmdesk.core.states import ENDED
from vmdesk.storage import copying, images, qcow2_header
from vmdesk.storage.copying import CopyProgress
from vmdesk.storage.file_lock import exclusive
from vmdesk.storage.qemu_img import Progress
from vmdesk.storage.snapshots import drop_tags, load_tree
from vmdesk.storage.vm_media import inside, locked, resolved, resolved_file

TYPE_CHECKING = False  # the config model (pydantic) only where a description is built
if TYPE_CHECKING:
    from vmdesk.core.config import Disk, VMConfig

BASES = ".bases"
# Not copied into a clone: its disks are made separately, and a clone starts with fresh
# firmware variables, TPM state, no snapshots and no logs.
_NOT_COPIED = {
    layout.CONFIG, layout.LOCK, layout.LAUNCH_PLAN, layout.RUN, layout.DISKS,
    layout.NVRAM, layout.TPM, layout.SNAPSHOTS, layout.LOGS,
}  # fmt: skip


def bases_dir(library: Library) -> Path:
    """Where bases live: two levels below the library root, like a bundle's ``disks/``, so
    the relative backing name ``../../.bases/images/X`` means the same file from both a
    bundle's disks and another base (a base of a linked clone of a linked clone)."""
    return library.root / BASES / "images"


@contextlib.contextmanager
def bases_locked(library: Library) -> Iterator[Path]:
    """Serialise base bookkeeping across processes (a clone's new base is not yet used)."""
    directory = bases_dir(library)
    directory.mkdir(parents=True, exist_ok=True)
    with exclusive(directory.parent / ".lock"):
        # A linked clone's scratch lives only while it holds this lock: any there now was
        # left by one that was killed.
        for stale in directory.parent.glob(".template-*"):
            shutil.rmtree(stale, ignore_errors=True)
        yield directory


def clone(
    library: Library,
    source: str,
    name: str,
    *,
    linked: bool = False,
    forwards: bool = True,
    progress: CopyProgress | None = None,
) -> Bundle:
    """A new VM ``name`` with the source's description and its own copy of its disks."""
    src = library.find(source)
    src_name = src.dir_name.removesuffix(layout.SUFFIX)
    refuse_if_suspended(src)
    if library.status(src) not in ENDED:
        raise Conflict(
            f"VM {src_name!r} is running, and a clone needs a stopped VM",
            hint=f"stop it first (`vmdesk stop {src_name}`)",
        )
    with locked(src, "being cloned"):
        config = src.load()
        _refuse_missing_disks(src, config, src_name)
        new = clone_description(config, name, forwards)
        if linked:
            with (
                bases_locked(library) as bases,
                tempfile.TemporaryDirectory(prefix=".template-", dir=bases.parent) as scratch,
            ):
                planned = _linked_disks(library, src, config, Path(scratch))
                return _create(library, new, src, planned, src_name, progress)
        return _create(library, new, src, _full_disks(src, config), src_name, progress)


def _refuse_missing_disks(src: Bundle, config: VMConfig, src_name: str) -> None:
    for index, disk in enumerate(config.disks):
        path = resolved(src, disk)
        if not path.is_file():
            raise NotFound(
                f"disk {index} of VM {src_name!r} ({path}) is missing",
                hint=f"put the file back, or detach it: `vmdesk disk rm {src_name} {index}`",
            )


def clone_description(config: VMConfig, name: str, forwards: bool) -> VMConfig:
    from vmdesk.core.config import from_dict, to_dict

    data = to_dict(config)
    data["name"] = name
    data["uuid"] = str(uuidlib.uuid4())
    for nic in data["nics"]:
        nic["mac"] = None  # a clone never shares the source's MACs
        if not forwards:
            nic["forwards"] = []
    return from_dict(data)


@dataclass(frozen=True)
class _Planned:
    """One disk of the clone, copied from ``origin``: the source's image (a full clone) or
    a fresh overlay on the shared base (a linked clone)."""

    disk: Disk
    origin: Path
    linked: bool = False


def _full_disks(src: Bundle, config: VMConfig) -> list[_Planned]:
    planned = []
    names: set[str] = set()
    for disk in config.disks:
        path = resolved(src, disk)
        inside = f"disks/{_unique(path.name, names)}"
        planned.append(_Planned(disk.model_copy(update={"file": inside}), path))
    return planned


def _unique(name: str, taken: set[str]) -> str:
    candidate, counter = name, 1
    while candidate in taken:
        stem, dot, suffix = name.partition(".")
        candidate = f"{stem}-{counter}{dot}{suffix}"
        counter += 1
    taken.add(candidate)
    return candidate


def _linked_disks(library: Library, src: Bundle, config: VMConfig, scratch: Path) -> list[_Planned]:
    bases = os.path.realpath(bases_dir(library))
    infos = []
    for disk in config.disks:  # every check before anything changes
        path = resolved(src, disk)
        if not inside(src, path):
            raise StorageError(
                f"{disk.file} is outside the VM's bundle, so it cannot become a shared base",
                hint="make a full clone instead (without --linked)",
            )
        info = images.inspect(path, chain=False)
        backing = info.backing_chain
        if backing and os.path.dirname(os.path.realpath(backing[0])) != bases:
            raise StorageError(
                f"{disk.file} has a backing file VM-Desk did not make ({backing[0]})",
                hint="make a full clone instead (without --linked)",
            )
        infos.append(info)
    if load_tree(src).snapshots:
        raise StorageError(
            "the VM has snapshots, which a linked clone would cut off from its disks",
            hint="delete its snapshots first, or make a full clone (without --linked)",
        )
    planned = []
    for index, info in enumerate(infos):
        template = scratch / f"disk{index}.qcow2"
        _freeze(library, src, config, index, info, template)
        frozen = config.disks[index]  # a raw disk got a new (qcow2) file
        planned.append(_Planned(frozen.model_copy(update={"format": "qcow2"}), template, True))
    return planned


def _freeze(
    library: Library, src: Bundle, config: VMConfig, index: int, info: images.ImageInfo,
    template: Path,
) -> None:  # fmt: skip
    """Turn the source's disk ``index`` into a read-only base with a new overlay on it, and
    keep a copy of that (empty) overlay as ``template`` for the clone: bundles sit side by
    side in the library, so the same relative backing name serves both."""
    disk = config.disks[index]
    path = resolved(src, disk)
    base = bases_dir(library) / f"{config.uuid.hex[:8]}-{secrets.token_hex(4)}.{disk.format}"
    os.link(path, base)  # same file system: no data moves
    backing = os.path.relpath(base, path.parent)
    if disk.format == "qcow2":
        tmp = path.with_name(f".{path.name}.overlay")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # a killed clone's, like its qemu-img's half file
        images.sweep_partials(tmp)
        images.overlay(tmp, backing, "qcow2", info.virtual_size)
        shutil.copyfile(tmp, template)
        tmp.replace(path)  # the one step that switches the source over
    else:  # a raw disk's overlay is qcow2: a new file, then the description points at it
        taken = {p.name for p in path.parent.iterdir()}
        new_path = path.parent / _unique(path.with_suffix(".qcow2").name, taken)
        images.overlay(new_path, backing, "raw", info.virtual_size)
        shutil.copyfile(new_path, template)
        config.disks[index] = disk.model_copy(
            update={"file": str(new_path.relative_to(src.path)), "format": "qcow2"}
        )
        src.save(config)
        path.unlink()
    base.chmod(0o444)


def _create(
    library: Library,
    new: VMConfig,
    src: Bundle,
    disks: list[_Planned],
    src_name: str,
    progress: CopyProgress | None,
) -> Bundle:
    new.disks = [planned.disk for planned in disks]

    def populate(staged: Path) -> None:
        for entry in src.path.iterdir():
            if entry.name not in _NOT_COPIED:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.copytree(entry, staged / entry.name, symlinks=True, dirs_exist_ok=True)
                else:
                    shutil.copy2(entry, staged / entry.name, follow_symlinks=False)
        (staged / layout.DISKS).mkdir(exist_ok=True)
        for planned in disks:
            target = staged / planned.disk.file
            copying.copy(planned.origin, target, None if planned.linked else progress)
            if not planned.linked:  # the source's snapshots stay its own
                drop_tags(target)

    try:
        return library.create(new, populate=populate)
    except ConfigError as exc:
        if any(".forwards" in p.field for p in exc.problems):
            raise Conflict(
                f"the clone's port forwards clash with {src_name!r}: {exc.problems[0]}",
                hint="clone with --no-forwards, then add new ones with `vmdesk edit`",
            ) from None
        raise


def sweep_bases(library: Library) -> list[Path]:
    """Delete the bases no disk in the library uses any more; returns them."""
    if not bases_dir(library).is_dir():
        return []
    with bases_locked(library) as directory:
        used: set[str] = set()
        for bundle in library.bundles():
            try:
                for disk in bundle.load_data()["disks"]:
                    path = resolved_file(bundle, disk["file"])
                    if path.exists():
                        chain = qcow2_header.backing_chain(path)
                        if chain is None:  # a header this reader can't follow
                            chain = images.inspect(path).backing_chain
                        used.update(os.path.realpath(layer) for layer in chain)
            except VMDeskError:  # unsure what a damaged VM uses: delete nothing
                return []
        removed = []
        for base in directory.iterdir():
            if base.name.startswith("."):
                continue
            if os.path.realpath(base) not in used:
                base.unlink()
                removed.append(base)
        return removed


def export(library: Library, ref: str, destination: Path, progress: Progress | None = None) -> Path:
    """Export a VM; disks on a base (linked clones) are exported whole, so the copy opens
    anywhere without the library's bases."""

    def flatten(bundle: Bundle, staged: Path) -> None:
        for disk in bundle.load().disks:
            if Path(disk.file).expanduser().is_absolute():
                continue  # not in the bundle, so not in the copy
            source = resolved(bundle, disk)
            if source.exists() and images.inspect(source).backing_chain:
                copied = resolved(Bundle(staged), disk)
                copied.unlink()
                images.convert(source, copied, "qcow2", progress=progress)

    return library.export(ref, destination, finish=flatten, copy_file=copying.copy_file)
