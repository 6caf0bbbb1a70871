"""`vmdesk doctor`: is this host ready to run VMs, and what to do about what is missing."""

from __future__ import annotations

import sys

import click
from rich.markup import escape

from vmdesk.cli.options import JSON_OUTPUT, print_json
from vmdesk.cli.output import console


@click.command()
@JSON_OUTPUT
@click.option("--no-probe", is_flag=True, help="Skip the accelerator probe (it may boot a guest).")
def doctor(as_json: bool, no_probe: bool) -> None:
    """Check QEMU, firmware, the accelerator, swtpm, virtiofsd and free disk space."""
    from rich.table import Table

    from vmdesk.service import host

    checks = host.doctor(probe=not no_probe)
    failed = host.blocking(checks)
    if as_json:
        print_json([c.as_dict() for c in checks])
    else:
        table = Table(show_edge=False, pad_edge=False)
        for column in ("check", "", "found", "fix"):
            table.add_column(column)
        for c in checks:
            mark = (
                "[green]ok[/]"
                if c.ok
                else ("[red]FAIL[/]" if c.severity == "error" else "[yellow]warn[/]")
            )
            first, *more = c.detail.split("\n")
            table.add_row(escape(c.name), mark, escape(first), escape(c.fix))
            for line in more:  # e.g. the firmware builds found, one row each
                table.add_row("", "", "  " + escape(line), "")
        console.print(table)
        if failed:
            console.print(f"[red]{len(failed)} problem(s) stop VMs from running here[/]")
        else:
            console.print("[green]this host can run VMs[/]")
    if failed:
        sys.exit(1)
