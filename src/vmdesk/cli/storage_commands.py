"""`vmdesk disk`, `vmdesk cd`, `vmdesk boot-order`, `vmdesk clone`, `vmdesk snapshot`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from vmdesk.cli.options import JSON_OUTPUT, print_json
from vmdesk.cli.output import console
from vmdesk.cli.vm_commands import _library
from vmdesk.core.errors import VMDeskError

FORMAT = click.Choice(["qcow2", "raw"])
INTERFACE = click.Choice(["virtio-blk", "nvme", "usb"])


def _size(value: str) -> int:
    from vmdesk.core.units import parse_size

    return parse_size(value, default_unit="G")


@contextmanager
def _progress_bar(title: str) -> Iterator[Callable[[float], None]]:
    """A bar fed with percentages (a plain start/end line when not on a terminal)."""
    with _stepped_bar(title) as report:
        yield lambda percent: report(title, percent)


@contextmanager
def _stepped_bar(title: str) -> Iterator[Callable[[str, float], None]]:
    """A bar fed with what is being done and the percentage of all of it."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(escape(title), total=100)
        yield lambda step, percent: bar.update(task, description=escape(step), completed=percent)


# -- vmdesk disk ------------------------------------------------------------------------


@click.group()
def disk() -> None:
    """Disk images: create, inspect, attach, grow, convert."""


@disk.command("create")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--size", required=True, help="Virtual size, e.g. 20GiB (a bare number is GiB).")
@click.option("--format", "fmt", type=FORMAT, default="qcow2", show_default=True)
def disk_create(file: Path, size: str, fmt: str) -> None:
    """Create an empty (sparse) image FILE."""
    from vmdesk.storage import images

    info = images.create(file.expanduser().absolute(), _size(size), images.parse_format(fmt))
    console.print(f"[green]✓[/] created {escape(info.path)}: {escape(info.summary())}")


@disk.command("info")
@click.argument("file", type=click.Path(path_type=Path))
@JSON_OUTPUT
def disk_info(file: Path, as_json: bool) -> None:
    """Show an image's format, sizes, backing chain and snapshots."""
    from vmdesk.storage import images

    info = images.inspect(file.expanduser().absolute())
    if as_json:
        print_json(info.as_dict())
        return
    console.print(f"{escape(info.path)}: {escape(info.summary())}")
    for layer in info.backing_chain:
        console.print(f"  backing   {escape(layer)}")
    for name in info.snapshots:
        console.print(f"  snapshot  {escape(name)}")


@disk.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def disk_check(file: Path) -> None:
    """Check an image's metadata with qemu-img check."""
    from vmdesk.storage import images

    images.verify(file.expanduser().absolute())
    console.print(f"[green]✓[/] {escape(str(file))} is clean")


@disk.command("list")
@click.argument("vm")
@JSON_OUTPUT
def disk_list(vm: str, as_json: bool) -> None:
    """List a VM's disks."""
    from vmdesk.service import storage

    found = storage.attached_disks(_library(), vm)
    if as_json:
        print_json([storage.disk_row(d) for d in found])
        return
    if not found:
        console.print(f"{escape(vm)} has no disks; add one with `vmdesk disk add {escape(vm)}`")
    for d in found:
        what = d.info.summary() if d.info else f"[red]{escape(d.problem)}[/]"
        ro = ", read-only" if d.disk["read_only"] else ""
        console.print(f"{d.index}  {escape(d.disk['file'])}  {d.disk['interface']}{ro}  {what}")


@disk.command("add")
@click.argument("vm")
@click.option("--size", required=True, help="Virtual size, e.g. 20GiB (a bare number is GiB).")
@click.option("--format", "fmt", type=FORMAT, default="qcow2", show_default=True)
@click.option("--interface", type=INTERFACE, default="virtio-blk", show_default=True)
def disk_add(vm: str, size: str, fmt: str, interface: Any) -> None:
    """Create a new empty disk in the VM's bundle and attach it."""
    from vmdesk.service import storage

    disk_, info = storage.disk_add(_library(), vm, _size(size), fmt, interface)
    console.print(f"[green]✓[/] added {escape(disk_.file)} to {escape(vm)}: {info.summary()}")


@disk.command("attach")
@click.argument("vm")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--interface", type=INTERFACE, default="virtio-blk", show_default=True)
@click.option("--read-only", is_flag=True, help="The guest cannot write to it.")
def disk_attach(vm: str, file: Path, interface: Any, read_only: bool) -> None:
    """Attach an existing image FILE to the VM (naming it approves it for an isolated VM)."""
    from vmdesk.service import storage

    disk_, info = storage.disk_attach(_library(), vm, file, interface, read_only)
    console.print(f"[green]✓[/] attached {escape(disk_.file)} to {escape(vm)}: {info.summary()}")


@disk.command("rm")
@click.argument("vm")
@click.argument("disk_ref", metavar="DISK")
@click.option("--delete", is_flag=True, help="Also delete the file (only files in the bundle).")
def disk_rm(vm: str, disk_ref: str, delete: bool) -> None:
    """Detach DISK (its index, file name or path) from the VM."""
    from vmdesk.service import storage

    path = storage.disk_remove(_library(), vm, disk_ref, delete=delete)
    done = "detached and deleted" if delete else "detached"
    console.print(f"[green]✓[/] {done} {escape(str(path))}")


@disk.command("grow")
@click.argument("vm")
@click.argument("disk_ref", metavar="DISK")
@click.argument("size")
@click.option("--shrink", is_flag=True, help="Allow a smaller size (loses data past the end).")
@click.option("--yes", is_flag=True, help="Do not ask before shrinking.")
def disk_grow(vm: str, disk_ref: str, size: str, shrink: bool, yes: bool) -> None:
    """Change the size of one of a stopped VM's disks."""
    from vmdesk.service import storage

    if shrink and not yes:
        if not sys.stdin.isatty():
            raise VMDeskError("shrinking needs confirmation", hint="add --yes")
        click.confirm("Shrinking cuts off everything past the new end. Go on?", abort=True)
    info = storage.disk_grow(_library(), vm, disk_ref, _size(size), shrink=shrink)
    console.print(f"[green]✓[/] {escape(info.path)}: {escape(info.summary())}")


@disk.command("compact")
@click.argument("vm")
@click.argument("disk_ref", metavar="[DISK]", required=False)
@JSON_OUTPUT
def disk_compact(vm: str, disk_ref: str | None, as_json: bool) -> None:
    """Give the host back the space a stopped VM's disks hold in zeroed blocks (every disk,
    or DISK: its index, file name or path). What the guest reads stays the same."""
    from vmdesk.core.units import human_size
    from vmdesk.service import storage

    started = time.monotonic()
    if as_json:
        print_json(storage.disk_compact(_library(), vm, disk_ref).as_dict())
        return
    with _stepped_bar(f"compacting {vm}'s disks") as progress:
        report = storage.disk_compact(_library(), vm, disk_ref, progress=progress)
    if not report.disks:
        console.print(f"{escape(vm)} has no disks to compact")
        return
    for d in report.disks:
        if d.method == "skipped":
            console.print(f"  {escape(d.file)}: left alone, it {escape(d.reason)}")
            continue
        sizes = f"{human_size(d.before)} -> {human_size(d.after)} on disk"
        note = "" if d.reclaimed else " (already compact)"
        console.print(f"[green]✓[/] {escape(d.file)}: {sizes}{note}")
    took = time.monotonic() - started
    console.print(f"reclaimed {human_size(report.reclaimed)} in {took:.1f} s")


@disk.command("convert")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=FORMAT, help="Default: from TARGET's suffix, else qcow2.")
def disk_convert(source: Path, target: Path, fmt: str | None) -> None:
    """Copy SOURCE to a new image TARGET in another format."""
    from vmdesk.storage import images

    chosen = fmt or ("raw" if target.suffix.lower() in (".raw", ".img") else "qcow2")
    started = time.monotonic()
    with _progress_bar(f"converting to {chosen}") as progress:
        info = images.convert(
            source.expanduser().absolute(),
            target.expanduser().absolute(),
            images.parse_format(chosen),
            progress=progress,
        )
    took = time.monotonic() - started
    console.print(f"[green]✓[/] {escape(info.path)}: {escape(info.summary())} ({took:.1f} s)")


# -- vmdesk cd / boot-order ---------------------------------------------------------------


@click.group()
def cd() -> None:
    """CD-ROM media (ISO images, attached read-only)."""


@cd.command("insert")
@click.argument("vm")
@click.argument("iso", type=click.Path(path_type=Path))
@click.option("--boot", is_flag=True, help="Boot from the CD first (to install a system).")
def cd_insert(vm: str, iso: Path, boot: bool) -> None:
    """Put ISO into a new CD-ROM drive of the VM."""
    from vmdesk.service import storage

    cdrom = storage.cd_insert(_library(), vm, iso, boot=boot)
    first = " (boots from it first)" if boot else ""
    console.print(f"[green]✓[/] inserted {escape(cdrom.file)} into {escape(vm)}{first}")


@cd.command("eject")
@click.argument("vm")
@click.argument("cd_ref", metavar="[CD]", required=False)
def cd_eject(vm: str, cd_ref: str | None) -> None:
    """Remove a CD-ROM drive (its index or ISO name), or all of them."""
    from vmdesk.service import storage

    for file in storage.cd_eject(_library(), vm, cd_ref):
        console.print(f"[green]✓[/] ejected {escape(file)}")


@cd.command("list")
@click.argument("vm")
@JSON_OUTPUT
def cd_list(vm: str, as_json: bool) -> None:
    """List a VM's CD-ROM drives."""
    from vmdesk.service import storage

    cdroms = storage.cdroms(_library(), vm)
    if as_json:
        print_json([{"index": i, **c} for i, c in enumerate(cdroms)])
        return
    if not cdroms:
        console.print(f"{escape(vm)} has no CD-ROM")
    for index, cdrom in enumerate(cdroms):
        order = f"  boot order {cdrom['boot_order']}" if cdrom.get("boot_order") else ""
        console.print(f"{index}  {escape(cdrom['file'])}{order}")


@click.command("boot-order")
@click.argument("vm")
@click.argument("first", type=click.Choice(["cd", "disk", "net"]))
def boot_order(vm: str, first: Any) -> None:
    """Boot from the CD-ROMs first (installing), the disks first, or the network (PXE)."""
    from vmdesk.service import storage

    storage.boot_from(_library(), vm, first)
    what = {"cd": "CD-ROMs", "disk": "disks", "net": "network (PXE), then its disks"}[first]
    console.print(f"[green]✓[/] {escape(vm)} boots from its {what} first")


# -- vmdesk clone -------------------------------------------------------------------------


@click.command()
@click.argument("source")
@click.argument("name")
@click.option("--linked", is_flag=True, help="Share the source's disks as a read-only base.")
@click.option("--no-forwards", is_flag=True, help="Drop the port forwards (they would clash).")
def clone(source: str, name: str, linked: bool, no_forwards: bool) -> None:
    """Make a new VM NAME from the stopped VM SOURCE (new UUID and MACs, fresh NVRAM/TPM).

    Of a VM on a host (HOST:VM), the clone is made on that host."""
    from vmdesk.service import lifecycle, vms

    started = time.monotonic()
    library = _library()
    if linked:  # no data moves: no bar (and no time spent loading one)
        config = vms.clone(library, source, name, linked=True, forwards=not no_forwards)
    else:
        with _progress_bar("copying disks") as percent:
            config = vms.clone(
                library,
                source,
                name,
                forwards=not no_forwards,
                progress=lambda done, total: percent(100 * done / max(total, 1)),
            )
    host = lifecycle.on_host(source)
    where = f"on host {host[0]}" if host else str(library.path_for(config.name))
    kind = "linked clone" if linked else "clone"
    took = time.monotonic() - started
    console.print(
        f"[green]✓[/] {kind} {escape(config.name)} of {escape(source)} in {took:.2f} s "
        f"({escape(where)})"
    )


# -- vmdesk snapshot ----------------------------------------------------------------------


@click.group()
def snapshot() -> None:
    """Snapshots of a VM's disks, with its RAM when it runs (a tree: revert, delete)."""


@snapshot.command("create")
@click.argument("vm")
@click.argument("name", required=False)
@click.option(
    "--disk-only",
    is_flag=True,
    help="Of a running VM, snapshot the disks but not the memory (reverting needs a stop).",
)
def snapshot_create(vm: str, name: str | None, disk_only: bool) -> None:
    """Snapshot every disk of the VM, and its RAM if it runs (NAME defaults to the time)."""
    from vmdesk.service import storage

    started = time.monotonic()
    snap = storage.snapshot_create(_library(), vm, name, disk_only=disk_only)
    what = "snapshot with RAM" if snap.ram else "snapshot"
    took = time.monotonic() - started
    console.print(
        f"[green]✓[/] {what} {escape(snap.name)} of {escape(vm)} ({snap.id}, {took:.1f} s)"
    )


@snapshot.command("list")
@click.argument("vm")
@JSON_OUTPUT
def snapshot_list(vm: str, as_json: bool) -> None:
    """Show the VM's snapshots as a tree; the one its disks descend from is marked."""
    from rich.tree import Tree

    from vmdesk.service import storage

    tree = storage.snapshots_of(_library(), vm)
    if as_json:
        print_json(tree.as_dict())
        return
    if not tree.snapshots:
        console.print(f"{escape(vm)} has no snapshots")
        return
    root = Tree(escape(vm))

    def add(parent: Tree, parent_id: str | None) -> None:
        for snap in tree.children(parent_id):
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(snap.created))
            here = "  [bold green]<- now[/]" if snap.id == tree.current else ""
            ram = " +RAM" if snap.ram else ""
            add(parent.add(f"{escape(snap.name)} [dim]{snap.id} {when}{ram}[/]{here}"), snap.id)

    add(root, None)
    console.print(root)


@snapshot.command("revert")
@click.argument("vm")
@click.argument("name")
def snapshot_revert(vm: str, name: str) -> None:
    """Go back to snapshot NAME (later changes are lost); a running VM resumes from it."""
    from vmdesk.service import storage

    snap = storage.snapshot_revert(_library(), vm, name)
    console.print(f"[green]✓[/] {escape(vm)} reverted to {escape(snap.name)}")


@snapshot.command("delete")
@click.argument("vm")
@click.argument("name")
def snapshot_delete(vm: str, name: str) -> None:
    """Delete snapshot NAME (its children stay valid)."""
    from vmdesk.service import storage

    snap = storage.snapshot_delete(_library(), vm, name)
    console.print(f"[green]✓[/] deleted snapshot {escape(snap.name)} of {escape(vm)}")


def register(group: click.Group) -> None:
    for command in (disk, cd, boot_order, clone, snapshot):
        group.add_command(command)
