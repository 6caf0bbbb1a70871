"""Snapshots: internal qcow2 snapshots of every disk, and a tree.

A stopped VM is snapshotted here with qemu-img (disks only); a running one through its
supervisor with QEMU's snapshot-save job, which also keeps RAM and device state, so a
revert resumes the guest exactly where it was. That is orchestrated by
vmdesk.service.snapshots (storage never talks to a supervisor); this module keeps the tree.

The tree lives in ``snapshots/tree.json`` (id, name, time, parent, the disks it covers,
and which snapshot the VM's disks currently descend from). Each disk carries an internal
snapshot tagged ``vmdesk-ID``; internal snapshots are independent of each other, so
deleting one never invalidates its children. A snapshot interrupted half-way leaves
tags that no tree entry names; every snapshot command removes such orphans first.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vmdesk.core import atomic
from vmdesk.core.bundle import Bundle
from vmdesk.core.errors import BundleError, Conflict, NotFound, StorageError
from vmdesk.core.library import Library, refuse_if_suspended
from vmdesk.storage import images, qemu_img
from vmdesk.storage.file_lock import exclusive
from vmdesk.storage.vm_media import locked, resolved

TYPE_CHECKING = False  # the config model (pydantic) only where a description is built
if TYPE_CHECKING:
    from vmdesk.core.config import VMConfig

TAG_PREFIX = "vmdesk-"


@dataclass
class Snapshot:
    id: str
    name: str
    created: float
    parent: str | None
    disks: list[str] = field(default_factory=list)  # config file entries it covers
    ram: bool = False  # taken from a running VM: RAM and device state included
    # the disks of a running VM, with its file systems frozen by its guest agent meanwhile
    quiesced: bool = False


@dataclass
class Tree:
    snapshots: list[Snapshot] = field(default_factory=list)
    current: str | None = None  # the snapshot the disks now descend from

    def find(self, ref: str) -> Snapshot:
        for snap in self.snapshots:
            if ref in (snap.name, snap.id):
                return snap
        raise NotFound(f"no snapshot {ref!r}", hint="see `vmdesk snapshot list NAME`")

    def children(self, snap_id: str | None) -> list[Snapshot]:
        return [s for s in self.snapshots if s.parent == snap_id]

    def as_dict(self) -> dict[str, Any]:
        return {"current": self.current, "snapshots": [asdict(s) for s in self.snapshots]}


def _tree_file(bundle: Bundle) -> Path:
    return bundle.files.snapshots / "tree.json"


def load_tree(bundle: Bundle) -> Tree:
    try:
        data = json.loads(_tree_file(bundle).read_text())
    except FileNotFoundError:
        return Tree()
    except (OSError, ValueError) as exc:
        raise BundleError(
            f"{_tree_file(bundle)} is damaged: {exc}",
            hint="restore it from a backup; the disks' snapshots are untouched",
        ) from None
    return Tree([Snapshot(**s) for s in data["snapshots"]], data.get("current"))


def _save_tree(bundle: Bundle, tree: Tree) -> None:
    bundle.files.snapshots.mkdir(exist_ok=True)
    atomic.write_text(_tree_file(bundle), json.dumps(tree.as_dict(), indent=2) + "\n")


def _disk_paths(bundle: Bundle, config: VMConfig) -> dict[str, Path]:
    return {disk.file: resolved(bundle, disk) for disk in config.disks}


def _tags(path: Path) -> list[str]:
    return [n for n in images.inspect(path).snapshots if n.startswith(TAG_PREFIX)]


def _delete_tag(path: Path, tag: str) -> None:
    qemu_img.run(["snapshot", "-d", tag, str(path)], what=f"deleting snapshot {tag} of {path}")


def drop_tags(path: Path, keep: frozenset[str] = frozenset()) -> None:
    """Delete the VM-Desk snapshots inside the qcow2 image ``path``, except ``keep``."""
    info = images.inspect(path)
    if info.format != "qcow2":
        return
    for tag in info.snapshots:
        if tag.startswith(TAG_PREFIX) and tag not in keep:
            _delete_tag(path, tag)


def _clean_orphans(bundle: Bundle, config: VMConfig, tree: Tree) -> None:
    """Remove internal snapshots left by an interrupted `snapshot create`."""
    known = frozenset(TAG_PREFIX + s.id for s in tree.snapshots)
    for path in _disk_paths(bundle, config).values():
        if path.exists():
            drop_tags(path, keep=known)


def _qcow2_disks(bundle: Bundle, config: VMConfig) -> dict[str, Path]:
    paths = _disk_paths(bundle, config)
    if not paths:
        raise StorageError("the VM has no disks to snapshot", hint="add one: `vmdesk disk add`")
    for file, path in paths.items():
        if images.inspect(path).format != "qcow2":
            raise StorageError(
                f"{file} is a raw image, which cannot hold snapshots",
                hint=f"convert it to qcow2 first: `vmdesk disk convert {path} NEW.qcow2`",
            )
    return paths


@contextlib.contextmanager
def _stopped_vm(library: Library, ref: str) -> Iterator[tuple[Bundle, VMConfig, Tree]]:
    """A stopped VM's bundle, locked, with its description and snapshot tree."""
    bundle = library.find(ref)
    with locked(bundle, "taking or restoring a snapshot"):
        refuse_if_suspended(bundle)
        config = bundle.load()
        tree = load_tree(bundle)
        _clean_orphans(bundle, config, tree)
        yield bundle, config, tree


def create(library: Library, ref: str, name: str | None = None) -> Snapshot:
    """Snapshot every disk of the stopped VM (a running one is snapshotted through its
    supervisor: see vmdesk.service.snapshots)."""
    with _stopped_vm(library, ref) as (bundle, config, tree):
        snap = new_snapshot(bundle, config, tree, name, ram=False)
        done: list[Path] = []
        try:
            for path in _qcow2_disks(bundle, config).values():
                qemu_img.run(
                    ["snapshot", "-c", tag_of(snap), str(path)], what=f"snapshotting {path}"
                )
                done.append(path)
            record_saved(bundle, tree, snap)
        except BaseException:
            for path in done:  # undo; whatever survives an interruption is an orphan
                _delete_tag(path, tag_of(snap))
            raise
        return snap


def tag_of(snap: Snapshot) -> str:
    """The internal snapshot tag each disk carries for ``snap``."""
    return TAG_PREFIX + snap.id


def new_snapshot(
    bundle: Bundle, config: VMConfig, tree: Tree, name: str | None, *, ram: bool
) -> Snapshot:
    """A new tree entry (not yet recorded) covering every disk; the name must be free."""
    name = name or time.strftime("%Y-%m-%d %H:%M:%S")
    if any(s.name == name for s in tree.snapshots):
        raise Conflict(f"a snapshot named {name!r} exists", hint="choose another name")
    paths = _qcow2_disks(bundle, config)
    return Snapshot(secrets.token_hex(4), name, time.time(), tree.current, list(paths), ram)


def record_saved(bundle: Bundle, tree: Tree, snap: Snapshot) -> None:
    tree.snapshots.append(snap)
    tree.current = snap.id
    _save_tree(bundle, tree)


def record_reverted(bundle: Bundle, tree: Tree, snap: Snapshot) -> None:
    tree.current = snap.id
    _save_tree(bundle, tree)


def tree(library: Library, ref: str) -> Tree:
    return load_tree(library.find(ref))


def revert(library: Library, ref: str, snapshot: str) -> Snapshot:
    """Put every disk back to how it was when ``snapshot`` was taken (and a running VM's
    RAM, for a snapshot that has it)."""
    with _stopped_vm(library, ref) as (bundle, config, tree):
        snap = tree.find(snapshot)
        paths = _disk_paths(bundle, config)
        tag = TAG_PREFIX + snap.id
        missing = [f for f, p in paths.items() if tag not in _tags(p)]
        if missing:  # checked before anything changes
            raise StorageError(
                f"disk(s) {', '.join(missing)} were attached after snapshot {snap.name!r}",
                hint="detach them to revert, or revert to a later snapshot",
            )
        for path in paths.values():
            qemu_img.run(["snapshot", "-a", tag, str(path)], what=f"reverting {path}")
        record_reverted(bundle, tree, snap)
        return snap


def delete(library: Library, ref: str, snapshot: str) -> Snapshot:
    """Delete a snapshot; its children keep working and hang off its parent instead."""
    with _stopped_vm(library, ref) as (bundle, config, tree):
        snap = tree.find(snapshot)
        tag = TAG_PREFIX + snap.id
        for path in _disk_paths(bundle, config).values():
            if path.exists() and tag in _tags(path):
                _delete_tag(path, tag)
        forget(bundle, tree, snap)
        return snap


def forget(bundle: Bundle, tree: Tree, snap: Snapshot) -> None:
    for child in tree.children(snap.id):
        child.parent = snap.parent
    tree.snapshots.remove(snap)
    if tree.current == snap.id:
        tree.current = snap.parent
    _save_tree(bundle, tree)


@contextlib.contextmanager
def live_tree(bundle: Bundle) -> Iterator[tuple[VMConfig, Tree]]:
    """A running VM's description and snapshot tree, for a change made through its
    supervisor. The supervisor owns the bundle, so snapshot commands serialise on their
    own lock instead."""
    with exclusive(bundle.files.snapshots / ".lock"):
        yield bundle.load(), load_tree(bundle)
