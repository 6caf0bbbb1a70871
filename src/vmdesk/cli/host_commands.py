"""Other hosts: libvirt daemons whose VMs VM-Desk drives (`vmdesk host add lab URI`)."""

from __future__ import annotations

import click
from rich.markup import escape

from vmdesk.cli.options import JSON_OUTPUT, print_json
from vmdesk.cli.output import console


@click.group()
def host() -> None:
    """Other hosts (libvirt daemons) whose VMs this desk drives, written HOST:VM."""


@host.command("add")
@click.argument("name")
@click.argument("uri")
@click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]), default="auto",
              show_default=True,
              help="Its VMs' accelerator: auto is KVM where the host offers it (on this "
                   "machine only where it really works); tcg where its KVM can't run "
                   "guests.")  # fmt: skip
def host_add(name: str, uri: str, accel: str) -> None:
    """Add host NAME at URI (qemu:///system, qemu+ssh://user@lab/system) once it answers.

    Credentials come from your SSH agent or libvirt's own authentication; none is stored."""
    from vmdesk.service import library, remote

    facts = remote.add_host(library.open(), name, uri, accel)
    console.print(
        f"[green]✓[/] added host [bold]{escape(name)}[/] ({escape(facts['hostname'])}, "
        f"libvirt {facts['libvirt']}, {facts['cpus']} CPUs, {facts['memory_mib']} MiB)"
    )


@host.command("list")
@JSON_OUTPUT
def host_list(as_json: bool) -> None:
    """The hosts, whether each answers, and how many VM-Desk VMs it has."""
    from vmdesk.service import library, remote

    rows = remote.host_rows(library.open())
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no hosts yet; add one with `vmdesk host add NAME URI`")
        return
    for row in rows:
        if row["reachable"]:
            detail = (f"libvirt {row['libvirt']}, {row['cpus']} CPUs, {row['memory_mib']} MiB, "
                      f"{row['vms']} VM(s)")  # fmt: skip
        else:
            detail = f"unreachable: {row['error']}"
        console.print(f"{escape(row['name'])}  {escape(row['uri'])}  {escape(detail)}")


@host.command("rm")
@click.argument("name")
def host_rm(name: str) -> None:
    """Forget host NAME (its VMs stay on it, untouched)."""
    from vmdesk.service import library, remote

    remote.remove_host(library.open(), name)
    console.print(f"[green]✓[/] removed host {escape(name)} (its VMs are still on it)")


@click.command()
@click.argument("vm")
@click.option(
    "--to",
    "to",
    required=True,
    metavar="HOST",
    help="Where to: a host (`vmdesk host list`), or `local` for this desk.",
)
def move(vm: str, to: str) -> None:
    """Move a stopped VM to a libvirt host, back to this desk (--to local), or between hosts.

    Its files are copied whole and read back to compare before the VM is removed where it
    was; snapshots do not move (delete them first)."""
    from vmdesk.cli.progress import transfer_progress
    from vmdesk.service import library, remote_move

    with transfer_progress(console, f"moving {vm} to {to}") as sent:
        moved = remote_move.move(library.open(), vm, to,
                                 lambda _file, done, total: sent(done, total))  # fmt: skip
    console.print(f"[green]✓[/] moved {escape(vm)} to [bold]{escape(moved)}[/]")


def register(group: click.Group) -> None:
    group.add_command(host)
