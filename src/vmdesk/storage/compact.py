"""Compacting a stopped VM's disks: the host gets back the space of blocks that hold only
zeros (a guest that zero-filled its free space, clusters zeroed but still allocated), like
"reclaim disk space" in Parallels or UTM. What the guest reads never changes.

qcow2: ``qemu-img convert`` rewrites the disk into a scratch file beside it, keeping only
clusters with data (qemu-img's default zero detection, ``-S 4k``), uncompressed, with the
same cluster size and qcow2 options, its dirty bitmaps, and an overlay's own backing file
(``-B`` with the name as written in the disk, ``-F`` its format), so a linked clone's or an
image VM's disk stays an overlay on the same base. The copy is checked (``qemu-img
check``), compared with the original as a guest reads both (``qemu-img compare``), fsynced
and renamed over the disk. The original is only ever opened read-only; on any failure or
Ctrl-C the copy is removed (a copy left by a killed process goes at the next compaction of
the VM), and a copy that saves less than 1 MiB is thrown away.

raw: ``fallocate --dig-holes`` (util-linux) punches holes where whole blocks are zero, in
place: it needs no free space and changes no byte the guest reads, so an interruption
leaves the same content with only some holes made. Without it (macOS), or on a file
system that cannot punch holes, the disk is rewritten the qcow2 way (``-O raw``).

Internal snapshots are refused, not kept: ``qemu-img convert`` writes only the current
state, and qemu-img cannot carry the snapshots (their clusters, a running VM's saved RAM)
into a new file. Deleting them is left to the user (`vmdesk snapshot delete`).

Left alone when compacting all disks, refused when named: disks outside the bundle (the
user's own files, perhaps used elsewhere), read-only ones, files another VM names too, and
files with other hard links (a rename would split them). A disk that a disk in the library
uses as its backing file is refused: VM-Desk keeps its bases (linked clones', images') in
the library's ``.bases/``, never in a bundle, and never compacts them (read-only, shared,
maybe hard links to the image cache), so only a chain made by hand gets there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vmdesk.core import atomic, layout, space
from vmdesk.core.bundle import Bundle
from vmdesk.core.errors import Conflict, NotFound, StorageError, VMDeskError
from vmdesk.core.library import Library, refuse_if_suspended
from vmdesk.core.states import ENDED
from vmdesk.storage import images, qcow2_header, qemu_img
from vmdesk.storage.snapshots import TAG_PREFIX, load_tree
from vmdesk.storage.vm_media import inside, locked, pick_disk, resolved, resolved_file

TYPE_CHECKING = False  # the config model (pydantic) only where a description is built
if TYPE_CHECKING:
    from vmdesk.core.config import VMConfig

# What is being done (e.g. "disks/disk0.qcow2: copying") and the percentage of all of it.
CompactProgress = Callable[[str, float], None]
_Step = Callable[[str, float], None]  # one disk's phase and its percentage
SCRATCH = ".compacting"  # suffix of the copy beside a disk: `.NAME.compacting`
# A copy that saves less is thrown away: rewriting a disk again for a few clusters of
# metadata (qemu-img lays a new file out a little differently each time) gains nothing.
WORTH = 1 << 20


@dataclass(frozen=True)
class Compacted:
    """One disk's result; sizes are what the file takes on the host (st_blocks * 512)."""

    file: str  # as the VM's description names it
    path: str
    format: str
    before: int
    after: int
    method: str  # "rewritten", "holes punched", "unchanged" (too little to gain), "skipped"
    reason: str = ""  # why it was skipped

    @property
    def reclaimed(self) -> int:
        return max(0, self.before - self.after)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reclaimed": self.reclaimed}


@dataclass(frozen=True)
class Report:
    vm: str
    disks: list[Compacted]

    @property
    def reclaimed(self) -> int:
        return sum(d.reclaimed for d in self.disks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "vm": self.vm,
            "disks": [d.as_dict() for d in self.disks],
            "before": sum(d.before for d in self.disks),
            "after": sum(d.after for d in self.disks),
            "reclaimed": self.reclaimed,
        }


@dataclass(frozen=True)
class _Disk:
    file: str
    path: Path
    format: str = ""
    facts: dict[str, Any] | None = None  # qemu-img info of the image itself
    skip: str = ""


def compact(
    library: Library, ref: str, which: str | None = None, progress: CompactProgress | None = None
) -> Report:
    """Compact every disk of the stopped VM ``ref`` (or only ``which``: an index, file name
    or path); all checks are made before any disk changes."""
    bundle = library.find(ref)
    name = bundle.dir_name.removesuffix(layout.SUFFIX)
    _refuse_unless_stopped(library, bundle, name)
    with locked(bundle, "compacting its disks"):
        refuse_if_suspended(bundle)  # suspended meanwhile
        config = bundle.load()
        indexes = range(len(config.disks)) if which is None else [pick_disk(bundle, config, which)]
        uses = _library_uses(library, bundle)
        disks = [_judge(bundle, name, config, i, uses, named=which is not None) for i in indexes]
        _sweep_scratch(bundle, disks)
        todo = sum(1 for d in disks if not d.skip)
        results, done = [], 0
        for disk in disks:
            if disk.skip:
                results.append(_skipped(disk))
                continue

            def step(phase: str, percent: float, done: int = done, file: str = disk.file) -> None:
                if progress is not None:
                    progress(f"{file}: {phase}", (100 * done + percent) / todo)

            results.append(_compact_one(disk, step))
            done += 1
    return Report(name, results)


def _skipped(disk: _Disk) -> Compacted:
    size = space.allocated_bytes(disk.path) if disk.path.exists() else 0
    return Compacted(disk.file, str(disk.path), disk.format, size, size, "skipped", disk.skip)


def _refuse_unless_stopped(library: Library, bundle: Bundle, name: str) -> None:
    refuse_if_suspended(bundle)
    status = library.status(bundle)
    if status not in ENDED:
        raise Conflict(
            f"VM {name!r} is {status}, and its disks are compacted only while it is stopped",
            hint=f"stop it first (`vmdesk stop {name}`)",
        )


# -- the checks ---------------------------------------------------------------------------


@dataclass
class _Uses:
    """Who uses which file in the library (real paths): VMs that name it as a disk, and
    disks that have it in their backing chain."""

    named_by: dict[str, list[str]]  # other VMs only
    backing_of: dict[str, list[str]]  # "FILE of VM 'x'", this VM's own disks included


def _library_uses(library: Library, me: Bundle) -> _Uses:
    uses = _Uses({}, {})
    for bundle in library.bundles():
        vm = bundle.dir_name.removesuffix(layout.SUFFIX)
        try:
            disks = bundle.load_data()["disks"]
        except VMDeskError:
            continue  # a damaged description: no VM can start from it either
        for disk in disks:
            path = resolved_file(bundle, disk["file"])
            if bundle.path != me.path:
                uses.named_by.setdefault(os.path.realpath(path), []).append(f"VM {vm!r}")
            if not path.exists():
                continue
            chain = qcow2_header.backing_chain(path)
            if chain is None:  # a header this reader can't follow
                with contextlib.suppress(VMDeskError):
                    chain = images.inspect(path).backing_chain
            for layer in chain or []:
                user = f"{disk['file']} of VM {vm!r}"
                uses.backing_of.setdefault(os.path.realpath(layer), []).append(user)
    return uses


def _judge(
    bundle: Bundle, vm: str, config: VMConfig, index: int, uses: _Uses, *, named: bool
) -> _Disk:
    """Disk ``index`` ready to compact, or why it is left alone; raises for a disk that
    must not be rewritten (or one named that would be left alone)."""
    disk = config.disks[index]
    path = resolved(bundle, disk)
    skip, hint = _reason_to_skip(bundle, path, disk.read_only, uses)
    if skip and named:
        kind = StorageError if path.is_file() else NotFound
        raise kind(f"{disk.file} {skip}, so it is not compacted", hint=hint)
    if skip:
        return _Disk(disk.file, path, disk.format, skip=skip)
    overlays = uses.backing_of.get(os.path.realpath(path))
    if overlays:
        raise Conflict(
            f"{disk.file} is the backing file of {', '.join(overlays)}, and is left as it is",
            hint="compact the disks on top of it instead",
        )
    facts = qemu_img.info(path)
    _refuse_snapshots(bundle, vm, disk.file, path, facts)
    fmt = str(facts["format"])
    details = facts.get("format-specific", {}).get("data", {})
    if fmt not in images.FORMATS:
        raise StorageError(f"{disk.file} is a {fmt} image", hint="VMs use qcow2 or raw disks")
    if "encrypt" in details or "data-file" in details:
        raise StorageError(
            f"{disk.file} is encrypted or keeps its data in another file, "
            "which VM-Desk does not rewrite",
            hint="it was left as it is",
        )
    return _Disk(disk.file, path, fmt, facts)


def _reason_to_skip(bundle: Bundle, path: Path, read_only: bool, uses: _Uses) -> tuple[str, str]:
    """Why a disk is left alone, and what to do about it ("" when it is not)."""
    if not path.is_file():
        return "does not exist", "see `vmdesk disk list NAME`"
    if not inside(bundle, path):
        return "is outside the VM's bundle", (
            f"VM-Desk rewrites only its own files; `vmdesk disk convert {path} NEW` "
            "writes a compact copy"
        )
    if read_only:
        return "is attached read-only", "detach it and attach it again without --read-only"
    others = uses.named_by.get(os.path.realpath(path))
    if others:
        return f"is also used by {', '.join(others)}", "detach it from the other VMs first"
    links = os.stat(path).st_nlink
    if links > 1:
        return f"has {links} hard links, which a rewrite would split", "remove the other links"
    return "", ""


def _refuse_snapshots(
    bundle: Bundle, vm: str, file: str, path: Path, facts: dict[str, Any]
) -> None:
    tags = [str(s["name"]) for s in facts.get("snapshots", [])]
    if not tags:
        return
    names = {f"{TAG_PREFIX}{s.id}": s.name for s in load_tree(bundle).snapshots}
    shown = ", ".join(repr(names.get(tag, tag)) for tag in tags)
    ours = all(tag in names for tag in tags)
    raise StorageError(
        f"{file} holds snapshots ({shown}), which compacting it would lose",
        hint=f"delete them first (`vmdesk snapshot delete {vm} SNAPSHOT`; see "
        f"`vmdesk snapshot list {vm}`)"
        if ours
        else f"delete them first (`qemu-img snapshot -l {path}` lists them)",
    )


def _sweep_scratch(bundle: Bundle, disks: list[_Disk]) -> None:
    """Remove copies a killed compaction left beside this VM's disks (the bundle is ours)."""
    for directory in {d.path.parent for d in disks if inside(bundle, d.path)}:
        for stale in directory.glob(f".*{SCRATCH}"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


# -- compacting one disk -------------------------------------------------------------------


def _compact_one(disk: _Disk, step: _Step) -> Compacted:
    before = space.allocated_bytes(disk.path)
    method = "holes punched"
    if not (disk.format == "raw" and _dig_holes(disk.path, step)):
        method = "rewritten" if _rewrite(disk, before, step) else "unchanged"
    after = space.allocated_bytes(disk.path)
    return Compacted(disk.file, str(disk.path), disk.format, before, after, method)


def _dig_holes(path: Path, step: _Step) -> bool:
    """Punch holes in a raw file where it holds only zeros; False when this host or file
    system cannot (the file is unchanged then, as after any failure here)."""
    tool = shutil.which("fallocate")
    if tool is None:
        return False
    step("punching holes", 0)
    done = subprocess.run(
        [tool, "--dig-holes", str(path)], capture_output=True, stdin=subprocess.DEVNULL
    )
    step("punching holes", 100)
    return done.returncode == 0


def _rewrite(disk: _Disk, before: int, step: _Step) -> bool:
    """Replace the disk by a compact copy of it; False when that would save too little."""
    scratch = disk.path.with_name(f".{disk.path.name}{SCRATCH}")
    scratch.unlink(missing_ok=True)
    try:
        step("copying", 0)
        qemu_img.run_with_progress(
            _convert_args(disk, scratch),
            what=f"compacting {disk.path}",
            progress=lambda percent: step("copying", percent / 2),
        )
        if before - space.allocated_bytes(scratch) < WORTH:
            return False
        images.verify(scratch)
        step("comparing", 50)
        differs = qemu_img.compare(
            disk.path, scratch, disk.format, progress=lambda p: step("comparing", 50 + p / 2)
        )
        if differs:  # never expected: say so rather than lose data
            raise StorageError(
                f"the compacted copy of {disk.path} differs from it ({differs})",
                hint="the disk was left as it was; please report this",
            )
        _replace(disk.path, scratch)
        return True
    finally:
        scratch.unlink(missing_ok=True)


def _convert_args(disk: _Disk, target: Path) -> list[str]:
    facts = disk.facts or {}
    args = ["convert", "-f", disk.format, "-O", disk.format]
    if disk.format == "qcow2":
        args += ["-o", _qcow2_options(facts)]
        if "backing-filename" in facts:  # stays an overlay: only its own clusters are copied
            args += ["-B", str(facts["backing-filename"]), "-F", _backing_format(facts)]
        if facts.get("format-specific", {}).get("data", {}).get("bitmaps"):
            args.append("--bitmaps")
    return [*args, str(disk.path), str(target)]


def _qcow2_options(facts: dict[str, Any]) -> str:
    """The creation options that keep the copy the same kind of qcow2 as the original."""
    data = facts.get("format-specific", {}).get("data", {})
    options = [f"cluster_size={facts['cluster-size']}", f"compat={data.get('compat', '1.1')}"]
    if "refcount-bits" in data:
        options.append(f"refcount_bits={data['refcount-bits']}")
    if data.get("lazy-refcounts"):
        options.append("lazy_refcounts=on")
    if data.get("extended-l2"):
        options.append("extended_l2=on")
    if data.get("compression-type", "zlib") != "zlib":
        options.append(f"compression_type={data['compression-type']}")
    return ",".join(options)


def _backing_format(facts: dict[str, Any]) -> str:
    if "backing-filename-format" in facts:
        return str(facts["backing-filename-format"])
    backing = Path(str(facts.get("full-backing-filename", "")))
    if not backing.is_file():
        raise NotFound(f"the backing file {backing} does not exist", hint="check the VM's disks")
    return images.inspect(backing, chain=False).format  # an old image that never said


def _replace(path: Path, scratch: Path) -> None:
    """Put ``scratch`` in place of ``path`` durably: its data on disk before the rename,
    the rename on disk before returning."""
    facts = os.stat(path)
    os.chmod(scratch, stat.S_IMODE(facts.st_mode))
    with contextlib.suppress(PermissionError):  # root compacting a user's VM: still theirs
        os.chown(scratch, facts.st_uid, facts.st_gid)
    fd = os.open(scratch, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(scratch, path)
    atomic.fsync_dir(path.parent)
