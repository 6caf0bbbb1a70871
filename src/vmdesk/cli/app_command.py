"""`vmdesk app`: VM-Desk in its own window, with a tray icon."""

from __future__ import annotations

import os
import sys

import click

from vmdesk.cli.output import console


@click.command()
@click.option("--console", "vm", metavar="VM", help="Also open VM's console in a window.")
@click.option("--page", default="/", show_default=True, help="The page to open, e.g. /new.")
def app(vm: str | None, page: str) -> None:
    """Open VM-Desk in its own window, with a tray icon (a second launch shows the first)."""
    launch(page, vm)


def launch(page: str, vm: str | None) -> None:
    """Be the app (until it quits) or hand ``page`` to the one running; `vmdesk open` too."""
    from vmdesk.cli.fast_app import ALREADY_OPEN
    from vmdesk.desktop import launcher

    if launcher.launch(page, console=vm) == "handed over":
        console.print(ALREADY_OPEN)
        return
    # Quit: the windows are gone, the server and the tray stopped. The window toolkit can
    # leave a thread waiting for ever on a script's result from a window closed while its
    # page loaded, and the interpreter would wait for that thread before exiting.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
