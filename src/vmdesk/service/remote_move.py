"""Moving a VM between this desk and a libvirt host, or between two hosts.

A stopped VM moves offline: every file of it is copied whole, the copy is read back and
compared with what was sent (SHA-256), and only then is the source removed. A running VM
moves between two hosts live (libvirt's migration). Whatever fails before the end leaves
the source as it was and nothing at the destination.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from vmdesk.core import hosts, states
from vmdesk.core.bundle import Bundle
from vmdesk.core.config import LinuxBoot, VMConfig
from vmdesk.core.errors import Conflict, HostError
from vmdesk.core.library import Library
from vmdesk.engines.libvirt.host import Domain, LibvirtHost
from vmdesk.service import remote
from vmdesk.service.library import find, name_of
from vmdesk.service.remote_run import connected

DESK = "local"  # the desk itself, as a destination (no host may take the name)
Transfer = Callable[[str, int, int], None]  # what is copied, bytes done, of total


def move(library: Library, ref: str, to: str, progress: Transfer | None = None) -> str:
    """Move the VM ``ref`` (``NAME`` or ``HOST:NAME``) to ``to`` (a host, or ``local``);
    the VM's new reference."""
    if to != DESK:
        hosts.get(library.root, to)  # an unknown host fails before anything is touched
    host, name = hosts.split(ref)
    if host == to or (host is None and to == DESK):
        where = f"host {to}" if host else "this desk"
        raise Conflict(f"{ref} is on {where} already", hint="name another host with --to")
    if host is None:
        return _desk_to_host(library, ref, to, progress)
    if to == DESK:
        return _host_to_desk(library, host, name, progress)
    return _host_to_host(library, host, name, to, progress)


# -- from the desk --------------------------------------------------------------------------


def _desk_to_host(library: Library, ref: str, to: str, progress: Transfer | None) -> str:
    from vmdesk.service import vms

    bundle = find(library, ref)
    name = name_of(bundle)
    _refuse_unmovable_bundle(library, bundle, name)
    config = bundle.load()
    with bundle.lock("being moved", busy_hint="wait for the move to end"):
        remote.place(library, to, library, config, progress, verify=True)
    vms.delete(library, name)
    return f"{to}:{name}"


def _refuse_unmovable_bundle(library: Library, bundle: Bundle, name: str) -> None:
    from vmdesk.storage import snapshots

    status = library.status(bundle)
    if status not in states.ENDED:
        raise Conflict(f"{name} is {status}: only a stopped VM moves",
                       hint=f"stop it first (`vmdesk stop {name}`)")  # fmt: skip
    count = len(snapshots.load_tree(bundle).snapshots)
    if count:
        raise Conflict(
            f"{name} has {count} snapshot(s), and snapshots do not move with a VM",
            hint=f"delete them first (`vmdesk snapshot list {name}`), or move a clone of it",
        )
    tpm = bundle.files.tpm
    if tpm.is_dir() and any(tpm.iterdir()):
        raise Conflict(
            f"{name}'s TPM holds state (keys its guest sealed), which VM-Desk can't carry "
            "to a libvirt host",
            hint=f"keep it here, or, if its guest keeps nothing in the TPM, remove the TPM "
            f"(`vmdesk edit {name} --no-tpm`) and its state ({tpm}) first",
        )


# -- from a host ----------------------------------------------------------------------------


def _stopped_domain(conn: LibvirtHost, name: str, *, live: bool = False) -> Domain:
    """The VM, when it can move: stopped (or, with ``live``, running or paused, to move
    between hosts), without snapshots."""
    domain = conn.domain(name)
    movable = (*states.ENDED, *(("running", "paused") if live else ()))
    if domain.state not in movable:
        raise Conflict(
            f"{name} is {domain.state} on {conn.where}: only a stopped VM moves to this desk, "
            "and a running one only between hosts",
            hint=f"stop it first (`vmdesk stop {conn.name}:{name}`)",
        )
    count = len(conn.snapshots(name)[0])
    if count:
        raise Conflict(
            f"{name} has {count} snapshot(s) on {conn.where}, and snapshots do not move",
            hint=f"delete them first (`vmdesk snapshot list {conn.name}:{name}`)",
        )
    return domain


def _host_to_desk(library: Library, host: str, name: str, progress: Transfer | None) -> str:
    with connected(library, host) as conn:
        domain = _stopped_domain(conn, name)
        if library.path_for(name).exists():
            raise Conflict(
                f"this desk has a VM named {name!r} already",
                hint=f"rename one of them first (`vmdesk rename {name} NEW`)",
            )
        config = domain.stored.config
        names = _local_names(config, domain.stored.files)

        def populate(staged: Path) -> None:
            _fetch(conn, domain.stored.files, names, staged, progress)

        library.create(config, populate=populate)
        conn.undefine(name)
    return name


def _host_to_host(library: Library, host: str, name: str, to: str,
                  progress: Transfer | None) -> str:  # fmt: skip
    with connected(library, host) as conn:
        domain = _stopped_domain(conn, name, live=True)
        if domain.state not in states.ENDED:
            return _live(library, conn, name, to)
        config = domain.stored.config
        names = _local_names(config, domain.stored.files)
        with remote.staging(library) as staged:
            bundle = staged.path_for(name)
            bundle.mkdir(parents=True)
            _fetch(conn, domain.stored.files, names, bundle, progress)
            remote.place(library, to, staged, config, progress, verify=True)
        conn.undefine(name)
    return f"{to}:{name}"


def _live(library: Library, conn: LibvirtHost, name: str, to: str) -> str:
    """A running VM from one host to another, live (libvirt's migration, its disks copied
    while it runs); the source's domain and volumes go once it runs on ``to``."""
    from vmdesk.engines.libvirt import migration

    with connected(library, to) as dest:
        dest.refuse_taken(name)
        migration.migrate(conn, dest, name)
    return f"{to}:{name}"


def _local_names(config: VMConfig, files: dict[str, str]) -> dict[str, str]:
    """Where in a bundle each of the VM's files goes: its own name, unless that is not a
    plain path inside a bundle (an absolute path, or one climbing out of it with ``..``,
    which a host's metadata must not be able to make us write), then a name of its own in
    the bundle; the description is changed to match."""
    names: dict[str, str] = {}
    for file in files:
        parts = PurePosixPath(file).parts
        inside = not file.startswith("/") and ".." not in parts and bool(parts)
        names[file] = file if inside else f"moved/{len(names)}-{PurePosixPath(file).name}"
    for disk in config.disks:
        disk.file = names.get(disk.file, disk.file)
    for cdrom in config.cdroms:
        cdrom.file = names.get(cdrom.file, cdrom.file)
    if isinstance(config.boot, LinuxBoot):
        config.boot.kernel = names.get(config.boot.kernel, config.boot.kernel)
        if config.boot.initrd:
            config.boot.initrd = names.get(config.boot.initrd, config.boot.initrd)
    return names


def _fetch(conn: LibvirtHost, files: dict[str, str], names: dict[str, str], bundle: Path,
           progress: Transfer | None) -> None:  # fmt: skip
    """Download each file into ``bundle`` and check that what was written is what came."""
    for file, path in files.items():
        local = bundle / names[file]
        local.parent.mkdir(parents=True, exist_ok=True)
        done = (lambda got, total, f=file: progress(f, got, total)) if progress else None
        with local.open("wb") as out:
            received = conn.download(path, out.write, done)
        if _sha256(local) != received:
            raise HostError(
                f"{local} does not hold what {conn.where} sent for {file} (SHA-256 differs)",
                hint="check this machine's disk and try again; the VM stays on the host",
            )


def _sha256(path: Path) -> str:
    with path.open("rb") as data:
        return hashlib.file_digest(data, "sha256").hexdigest()
