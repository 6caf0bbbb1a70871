"""`vmdesk open [TARGET]`: what the desktop's menu entry, a file manager and a clicked
``vmdesk://`` link run; it opens the app (or hands the page to the app already running)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from vmdesk.cli.output import console

if TYPE_CHECKING:
    from vmdesk.core.library import Library


@click.command("open")
@click.argument("target", required=False, default="")
@click.option(
    "--show-errors", is_flag=True, help="Show an error in a dialog too (no terminal to read it)."
)
def open_target(target: str, show_errors: bool) -> None:
    """Open the app at a vmdesk:// link or bundle.

    TARGET is vmdesk://vm/NAME, vmdesk://console/NAME, vmdesk://new, or the path (or
    file:// URI) of a bundle; a bundle outside the library is imported into it first. No
    TARGET opens the list of VMs.
    """
    from vmdesk.core.errors import VMDeskError

    try:
        _open(target)
    except VMDeskError as exc:
        if show_errors:
            from vmdesk.desktop import toolkit

            toolkit.alert(exc.message, exc.hint)
        raise


def _open(target: str) -> None:
    from vmdesk.desktop import links
    from vmdesk.service import library as service_library

    library = service_library.open()
    found = links.resolve(target, library.root)
    page = found.page
    if found.import_from is not None:
        page = links.vm_page(import_for_opening(library, found.import_from))
    assert page is not None  # resolve() gives a page or a bundle to import
    from vmdesk.cli.app_command import launch  # the window's toolkit: only once there is a page

    launch(page, found.console)


def import_for_opening(library: Library, source: Path) -> str:
    """Import the bundle ``source`` and return its VM's name. The same VM (same name and
    UUID) already in the library is opened, not copied again: a bundle double-clicked twice
    in a file manager. `vmdesk import` makes a second copy when one is wanted."""
    from vmdesk.core.bundle import Bundle
    from vmdesk.core.errors import Conflict
    from vmdesk.service import vms

    incoming = Bundle(source).load()  # not a bundle, damaged: the error names the file
    held = library.path_for(incoming.name)
    if held.is_dir() and Bundle(held).load().uuid == incoming.uuid:
        console.print(f"{escape(incoming.name)} is already in the library: opening it")
        return incoming.name
    try:
        config = vms.import_bundle(library, source)
    except Conflict as exc:  # another VM has that name: `vmdesk import` can rename it
        raise Conflict(
            exc.message,
            hint=f"import it under another name: vmdesk import {shlex.quote(str(source))} "
            "--name NEW, then vmdesk open vmdesk://vm/NEW",
        ) from None
    console.print(f"[green]✓[/] imported [bold]{escape(config.name)}[/]")
    return config.name
