"""Snapshots of a VM: offline through storage (qemu-img), live through its supervisor.

A running VM's snapshots are taken by its QEMU (RAM and device state included, unless
``disk_only``); the tree in the bundle is changed only once the supervisor said it worked.
"""

from __future__ import annotations

from vmdesk.core import hosts
from vmdesk.core.bundle import Bundle
from vmdesk.core.errors import StorageError
from vmdesk.core.library import Library
from vmdesk.core.states import AT_REST
from vmdesk.service.library import find, name_of
from vmdesk.storage import snapshots
from vmdesk.storage.snapshots import Snapshot, Tree

LIVE_TIMEOUT = 600.0  # writing a large guest's RAM into its disk takes a while


def _running(library: Library, bundle: Bundle) -> bool:
    # A suspended VM goes the offline way, whose locked check refuses it.
    return library.status(bundle) not in AT_REST


def _ask(bundle: Bundle, op: str, snap: Snapshot, *, disk_only: bool = False) -> bool:
    """Have the supervisor do ``op``; whether the guest's file systems were frozen."""
    from vmdesk.supervisor import client

    extra = {"disk_only": True} if disk_only else {}
    reply = client.call(bundle, op, tag=snapshots.tag_of(snap), timeout=LIVE_TIMEOUT, **extra)
    return bool(reply.get("quiesced"))


def _on_host(ref: str) -> tuple[str, str] | None:
    host, name = hosts.split(ref)
    return (host, name) if host is not None else None


def tree(library: Library, ref: str) -> Tree:
    """The VM's snapshots, a tree by parent; ``current`` is the one its disks descend from."""
    if remote_vm := _on_host(ref):
        from vmdesk.service import remote

        return remote.snapshot_tree(library, *remote_vm)
    return snapshots.load_tree(find(library, ref))


def create(
    library: Library, ref: str, name: str | None = None, *, disk_only: bool = False
) -> Snapshot:
    """Snapshot every disk (and the RAM of a running VM, unless ``disk_only``)."""
    if remote_vm := _on_host(ref):
        from vmdesk.service import remote

        return remote.snapshot(library, *remote_vm, "create", name, disk_only=disk_only)
    bundle = find(library, ref)
    if not _running(library, bundle):
        return snapshots.create(library, name_of(bundle), name)
    with snapshots.live_tree(bundle) as (config, current):
        snap = snapshots.new_snapshot(bundle, config, current, name, ram=not disk_only)
        snap.quiesced = _ask(bundle, "snapshot_save", snap, disk_only=disk_only)
        snapshots.record_saved(bundle, current, snap)
        return snap


def revert(library: Library, ref: str, snapshot: str) -> Snapshot:
    """Put the disks (and a running VM's RAM, for a snapshot that has it) back."""
    if remote_vm := _on_host(ref):
        from vmdesk.service import remote

        return remote.snapshot(library, *remote_vm, "revert", snapshot)
    bundle = find(library, ref)
    if not _running(library, bundle):
        return snapshots.revert(library, name_of(bundle), snapshot)
    with snapshots.live_tree(bundle) as (_config, current):
        snap = current.find(snapshot)
        if not snap.ram:
            raise StorageError(
                f"snapshot {snap.name!r} holds disks only, and the VM is running",
                hint="stop the VM first, then revert (`vmdesk stop NAME`)",
            )
        _ask(bundle, "snapshot_load", snap)
        snapshots.record_reverted(bundle, current, snap)
        return snap


def delete(library: Library, ref: str, snapshot: str) -> Snapshot:
    """Delete a snapshot; its children keep working and hang off its parent instead."""
    if remote_vm := _on_host(ref):
        from vmdesk.service import remote

        return remote.snapshot(library, *remote_vm, "delete", snapshot)
    bundle = find(library, ref)
    if not _running(library, bundle):
        return snapshots.delete(library, name_of(bundle), snapshot)
    with snapshots.live_tree(bundle) as (_config, current):
        snap = current.find(snapshot)
        _ask(bundle, "snapshot_delete", snap)
        snapshots.forget(bundle, current, snap)
        return snap
