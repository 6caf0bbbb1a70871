"""What the app stands on: pywebview and a GUI toolkit under it, a display, and the web
server in a thread of the app's process. Each missing piece is one line with its fix."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmdesk.core.errors import HostToolMissing, VMDeskError

WM_CLASS = "VM-Desk"  # the .desktop file's StartupWMClass
LINUX_PACKAGES = "sudo apt install python3-gi gir1.2-gtk-3.0 gir1.2-webkit2-4.1"


def check_display() -> None:
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise VMDeskError(
            "the app needs a graphical desktop, and this session has none (no DISPLAY)",
            hint="run it from your desktop session, or use `vmdesk ui --no-browser` here",
        )


def load() -> Any:
    """The pywebview module, once this host can show its windows."""
    check_display()
    try:
        import webview
    except ImportError:
        raise HostToolMissing(
            "the app window needs pywebview, which is not installed",
            hint="pip install 'vmdesk[app]' (or use `vmdesk ui` in a browser)",
        ) from None
    if sys.platform.startswith("linux"):
        _gtk_ready()
    return webview


def _gtk_ready() -> None:
    try:
        import gi  # type: ignore[import-untyped]

        gi.require_version("Gtk", "3.0")
        gi.require_version("WebKit2", "4.1")
        from gi.repository import GLib  # type: ignore[import-untyped]
    except (ImportError, ValueError):
        raise HostToolMissing(
            "the app window needs GTK 3 and WebKitGTK with their Python bindings",
            hint=f"{LINUX_PACKAGES}, then pip install 'vmdesk[app]' (or use `vmdesk ui`)",
        ) from None
    GLib.set_prgname(WM_CLASS)  # the window's WM_CLASS: the desktop file matches it
    GLib.set_application_name(WM_CLASS)


@dataclass
class Served:
    url: str
    token: str
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        # The windows are gone; an event stream their web process left open is cut short
        # (uvicorn would log its cancellation as an error).
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        self.server.should_exit = True
        self.thread.join(10)


def serve(library_root: Path) -> Served:
    """The web app on 127.0.0.1 (any free port), in a daemon thread; returns once it listens."""
    from vmdesk.web import security, server

    token = security.new_token()
    sock = server.bind(server.LOOPBACK, 0)
    served = server.server(sock, token, library_root)
    thread = threading.Thread(
        target=served.run, kwargs={"sockets": [sock]}, name="web", daemon=True
    )
    thread.start()
    for _ in range(200):
        if served.started or not thread.is_alive():
            break
        threading.Event().wait(0.05)
    if not served.started:
        raise VMDeskError("the app's web server did not start", hint="run `vmdesk ui` to see why")
    return Served(server.url(sock), token, served, thread)


def start(webview: Any, background: Callable[[], None]) -> None:
    """The GUI loop (this thread, until every window is gone); ``background`` in another."""
    private = True  # no cookie or cache outlives the app: the token is per launch
    webview.start(background, private_mode=private)


def alert(message: str, hint: str | None) -> bool:
    """An error in a dialog, for a launch with no terminal to print it to (a file manager,
    a browser's link, the menu); False where no dialog can be shown."""
    try:
        load()
        from gi.repository import Gtk
    except VMDeskError:
        return False
    if not Gtk.init_check()[0]:
        return False
    dialog = Gtk.MessageDialog(
        message_type=Gtk.MessageType.ERROR, buttons=Gtk.ButtonsType.CLOSE, text=message
    )
    dialog.set_title(WM_CLASS)
    if hint:
        dialog.format_secondary_text(hint)
    dialog.run()
    dialog.destroy()
    return True
