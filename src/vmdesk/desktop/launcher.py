"""Opening the app at a page: this process becomes the app, or hands the page to the app
that already runs for this library (and returns at once)."""

from __future__ import annotations

from vmdesk.core import paths
from vmdesk.core.errors import VMDeskError


def check_page(page: str) -> str:
    """A path on the app's own server (never another site, never a scheme)."""
    if not page.startswith("/") or page.startswith("//") or "\\" in page:
        raise VMDeskError(
            f"{page!r} is not a page of the app", hint="give a path such as /, /new or /vms/NAME"
        )
    return page


def launch(page: str = "/", console: str | None = None) -> str:
    """ "handed over" when another app shows it, "quit" once this app has ended."""
    from vmdesk.desktop import app

    return app.run(paths.library_dir(), check_page(page), console)
