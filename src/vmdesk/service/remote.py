"""VMs on other hosts (libvirt daemons): the hosts themselves, and the verbs on their VMs.

A VM on a host is written ``HOST:VM``. It is made the way a local VM is (the same rules,
images and seeds, in a staging library), then its files go to the host's storage pool and
its description into the domain, and nothing of it stays on the desk.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from vmdesk.core import config as config_model
from vmdesk.core import hosts
from vmdesk.core.config import VMConfig
from vmdesk.core.errors import HostError, Unsupported, VMDeskError
from vmdesk.core.library import Library
from vmdesk.engines.libvirt.domain_xml import Placement
from vmdesk.engines.libvirt.host import LibvirtHost
from vmdesk.service import remote_list
from vmdesk.service.remote_run import connected
from vmdesk.storage.snapshots import Snapshot, Tree

Upload = Callable[[str, int, int], None]  # file, bytes sent, of total


# -- hosts ----------------------------------------------------------------------------------


def add_host(library: Library, name: str, uri: str, accel: str = "auto") -> dict[str, Any]:
    """Add a host once it answers: a host that can't be reached is not written down.
    ``accel`` tcg keeps its VMs off a KVM the host offers and can't really run (nested)."""
    hosts.check_name(name)
    hosts.check_uri(uri)
    conn = LibvirtHost(name, uri)
    try:
        facts = conn.facts()
    finally:
        with contextlib.suppress(VMDeskError):
            conn.close()
    host = hosts.add(library.root, name, uri, accel)
    return {"name": host.name, "uri": host.uri, "accel": host.accel, **facts}


def remove_host(library: Library, name: str) -> None:
    """Forget a host; its VMs stay on it, untouched."""
    hosts.remove(library.root, name)


def host_rows(library: Library) -> list[dict[str, Any]]:
    """Each host: reachable or not (with why), its facts and how many VM-Desk VMs it has;
    the hosts asked at once, as `vmdesk list` asks them."""
    from concurrent.futures import ThreadPoolExecutor

    def ask(host: hosts.Host) -> dict[str, Any]:
        row: dict[str, Any] = {"name": host.name, "uri": host.uri}
        try:
            with connected(library, host.name, timeout=remote_list.TIMEOUT) as conn:
                row.update(conn.facts(), reachable=True, vms=conn.vm_count())
        except VMDeskError as exc:
            row.update(reachable=False, error=exc.message)
        return row

    known = hosts.load(library.root)
    if not known:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(known))) as pool:
        return list(pool.map(ask, known))


# -- VMs ------------------------------------------------------------------------------------


def get(library: Library, host: str, name: str) -> dict[str, Any]:
    """`vmdesk show`'s answer for a VM on a host, in the shape of a local VM's."""
    from vmdesk.engines.libvirt.capabilities import capabilities
    from vmdesk.service import features

    with connected(library, host) as conn:
        domain = conn.domain(name)
    config = config_model.to_dict(domain.stored.config)
    caps = capabilities()
    reason = f"a VM on host {host}, run by its libvirt daemon"
    return {
        "name": name, "host": host, "status": domain.state,
        "runtime": {"status": domain.state}, "path": f"host {host}", "config": config,
        "capabilities": caps.as_dict(), "files": domain.stored.files,
        "engine": {"name": "libvirt", "reason": reason, "hint": None, "runs_here": False,
                   "text": f"libvirt ({reason})", "display": None},
        "features": features.of(config, caps, reason),
        "guest": None, "memory": None, "disk_io": {}, "nat": {},
    }  # fmt: skip


def delete(library: Library, host: str, name: str) -> list[str]:
    with connected(library, host) as conn:
        return conn.undefine(name)


@contextlib.contextmanager
def staging(library: Library) -> Iterator[Library]:
    """A staging library on the desk, to make a VM for a host in with every rule of a local
    create (images, seeds, new disks); removed afterwards, whatever happened."""
    root = Path(tempfile.mkdtemp(prefix=".remote-", dir=_root(library)))
    try:
        yield Library(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def place(library: Library, host: str, staged: Library, config: VMConfig,
          upload: Upload | None = None, *, verify: bool = False) -> VMConfig:  # fmt: skip
    """Upload the staged VM's files to the host's pool and define its domain; with
    ``verify`` each volume is read back from the host and must match what was sent. A
    failure leaves neither a domain nor volumes behind. The isolation policy is judged here,
    on the desk, as a local start judges it: the host's libvirt knows nothing of it."""
    from vmdesk.core import isolation

    bundle = staged.path_for(config.name)
    isolation.enforce(config, bundle)
    with connected(library, host) as conn:
        conn.refuse_taken(config.name)  # before anything is uploaded
        placement, sent = _upload_files(conn, config, bundle, upload)
        defined = False
        try:
            conn.define(config, placement)
            defined = True
            if verify:
                _verify(conn, sent)
        except BaseException:
            if defined:
                with contextlib.suppress(VMDeskError):
                    conn.undefine(config.name)
            remove_volumes(conn, placement.files)
            raise
    return config


def _verify(conn: LibvirtHost, sent: dict[str, str]) -> None:
    for path, digest in sent.items():
        if conn.digest(path) != digest:
            raise HostError(
                f"{path} on {conn.where} does not hold what was sent (SHA-256 differs)",
                hint="check the host's disk and try again; nothing was removed here",
            )


def create(library: Library, host: str, make: Callable[[Library], VMConfig],
           upload: Upload | None = None) -> VMConfig:  # fmt: skip
    """``make(staging)`` makes the VM; then it goes to the host (:func:`place`)."""
    hosts.get(library.root, host)  # an unknown host fails before anything is made
    with staging(library) as staged:
        return place(library, host, staged, make(staged), upload)


def _root(library: Library) -> Path:
    library.root.mkdir(parents=True, exist_ok=True)
    return library.root


def _files(config: VMConfig) -> list[str]:
    named = [d.file for d in config.disks] + [c.file for c in config.cdroms]
    boot = config.boot
    if boot.kind == "linux":
        named += [boot.kernel] + ([boot.initrd] if boot.initrd else [])
    return named


def _upload_files(conn: LibvirtHost, config: VMConfig, bundle: Path,
                  upload: Upload | None) -> tuple[Placement, dict[str, str]]:  # fmt: skip
    """Each file the VM names, in the host's pool, and the SHA-256 of what each volume was
    sent; disks with a backing chain (overlays on an image) are flattened first, since the
    host has no copy of the image."""
    from vmdesk.storage import images as disk_images

    files: dict[str, str] = {}
    sent: dict[str, str] = {}
    formats = {d.file: d.format for d in config.disks}
    # flattened copies beside the bundle, never in it: a failed move leaves the VM as it was
    with tempfile.TemporaryDirectory(prefix=".flat-", dir=bundle.parent) as scratch:
        try:
            for index, file in enumerate(_files(config)):
                local = Path(file) if file.startswith("/") else bundle / file
                if formats.get(file) == "qcow2" and disk_images.inspect(local).backing_chain:
                    flat = Path(scratch) / f"{index}.qcow2"
                    disk_images.convert(local, flat, "qcow2")
                    local = flat
                sent_to = (lambda done, total, f=file: upload(f, done, total)) if upload else None
                files[file], sent[files[file]] = conn.upload(local, volume_name(config, file),
                                                             sent_to)  # fmt: skip
        except BaseException:
            remove_volumes(conn, files)
            raise
    return placement(conn, config, files), sent


def placement(conn: LibvirtHost, config: VMConfig, files: dict[str, str]) -> Placement:
    """What the host's domain for ``config`` is made of: KVM or TCG, the volumes of its
    files, passt or slirp, and where its serial console is logged."""
    domain_type = "kvm" if kvm_for(conn, config) else "qemu"
    passt = conn.offers_passt(config.arch)
    return Placement(domain_type, files, passt=passt, serial_log=conn.serial_log(config.name))


def volume_name(config: VMConfig, file: str) -> str:
    """The pool volume holding the VM's file ``file``: unique to the VM (its UUID), telling
    a person on the host whose it is."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", file).lstrip("-.")
    return f"{config.name}-{config.uuid.hex[:8]}-{safe}"


def kvm_for(conn: LibvirtHost, config: VMConfig) -> bool:
    """KVM when the host offers it and it works: for this machine's own daemon (however
    reached) the desk's own probe decides, since a nested KVM can be offered and still hang
    guests; another machine is taken at its word unless it was added with --accel tcg."""
    accel = conn.accel
    if accel != "auto" or not conn.offers_kvm(config.arch):
        return accel == "kvm"
    if conn.remote:
        return True
    from vmdesk.engines.qemu import accel as qemu_accel

    return qemu_accel.choose(config.arch).accel == "kvm"


def remove_volumes(conn: LibvirtHost, files: Mapping[str, str]) -> None:
    for path in files.values():
        with contextlib.suppress(VMDeskError):
            conn.remove_volume(path)


def snapshot_tree(library: Library, host: str, name: str) -> Tree:
    """The VM's snapshots as the host's libvirt keeps them, as a local VM's tree."""
    with connected(library, host) as conn:
        found, current = conn.snapshots(name)
    snaps = [Snapshot(id=s["name"], name=s["name"], created=s["created"], parent=s["parent"],
                      ram=s["ram"]) for s in found]  # fmt: skip
    return Tree(snaps, current)


def snapshot(library: Library, host: str, name: str, action: str, snapshot: str | None,
             *, disk_only: bool = False) -> Snapshot:  # fmt: skip
    """create (named by the time when ``snapshot`` is None), revert or delete."""
    if disk_only:
        raise Unsupported(
            "disk-only snapshots of VMs on libvirt hosts are not made by VM-Desk yet",
            hint="take one with the RAM (leave out --disk-only), or stop the VM first",
        )
    if action == "create":
        label = snapshot or time.strftime("%Y-%m-%d-%H%M%S")
        with connected(library, host) as conn:
            conn.snapshot(name, "create", label)
        return snapshot_tree(library, host, name).find(label)
    found = snapshot_tree(library, host, name).find(snapshot or "")
    with connected(library, host) as conn:
        conn.snapshot(name, action, found.name)
    return found
