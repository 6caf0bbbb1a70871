"""`vmdesk app`: VM-Desk in its own window, with a tray icon."""

from __future__ import annotations

import click

from vmdesk.cli.output import console


@click.command()
@click.option("--console", "vm", metavar="VM", help="Also open VM's console in a window.")
@click.option("--page", default="/", show_default=True, help="The page to open, e.g. /new.")
def app(vm: str | None, page: str) -> None:
    """Open VM-Desk in its own window, with a tray icon (a second launch shows the first)."""
    from vmdesk.cli.fast_app import ALREADY_OPEN
    from vmdesk.desktop import launcher

    if launcher.launch(page, console=vm) == "handed over":
        console.print(ALREADY_OPEN)
