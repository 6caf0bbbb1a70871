"""`vmdesk app`: the web server on 127.0.0.1 (a free port, a fresh token), the library in a
window, the tray icon, and the control socket a second launch talks to. Windows and the
app come and go; VMs run under their own supervisors and keep running."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from vmdesk.core.errors import VMDeskError
from vmdesk.desktop import instance, toolkit
from vmdesk.desktop.windows import Windows
from vmdesk.service import library as libraries
from vmdesk.service import lifecycle, vms

REFRESH_SECONDS = 2.0
RUNNING = ("running", "paused")


def say(line: str) -> None:
    print(f"vmdesk app: {line}", file=sys.stderr, flush=True)


class Desk:
    """One running app: its library, server, windows and tray."""

    def __init__(self, library_root: Path) -> None:
        self.library = libraries.open(library_root)
        self.windows: Windows | None = None
        self.tray: Any = None
        self.ready = threading.Event()
        self.ended = threading.Event()

    def handle(self, request: dict[str, str]) -> dict[str, str]:
        """A later launch's request (control socket thread)."""
        if not self.ready.wait(30) or self.windows is None:
            return {"error": "the app is still starting"}
        windows = self.windows
        if vm := request.get("console"):
            work = lambda: windows.console(vm)  # noqa: E731
        else:
            work = lambda: windows.show(request.get("page") or None)  # noqa: E731
        # The GUI does it in its own time: the launch that asked need not wait for it.
        threading.Thread(target=work, name="app-show", daemon=True).start()
        return {"shown": request.get("console") or request.get("page") or "/"}

    def act(self, action: tuple[str, ...]) -> None:
        """A tray menu choice (a worker thread): every VM operation through the service."""
        verb, *args = action
        assert self.windows is not None
        try:
            if verb == "show":
                self.windows.show(args[0] if args else None)
            elif verb == "console":
                self.windows.console(args[0])
            elif verb == "start":
                lifecycle.start(self.library, args[0])
            elif verb == "stop":
                lifecycle.stop(self.library, args[0])
            elif verb == "suspend":
                lifecycle.suspend(self.library, args[0])
            elif verb == "resume":
                lifecycle.simple(self.library, args[0], "resume")
            elif verb == "quit":
                self.quit(args[0] if args else "leave")
        except VMDeskError as exc:
            what = f"{verb} {' '.join(args)}".strip()
            said = exc.message + (f" ({exc.hint})" if exc.hint else "")
            say(f"{what}: {said}")
            if self.tray is not None:  # a menu click has no terminal to read this in
                self.tray.notify(f"VM-Desk could not {what}", said)
        if self.tray is not None:
            self.tray.refresh()

    def running(self) -> list[str]:
        return [str(r["name"]) for r in vms.summaries(self.library) if r.get("status") in RUNNING]

    def quit(self, mode: str) -> None:
        """leave: VMs keep running; suspend / stop: each running VM first."""
        for name in self.running() if mode in ("suspend", "stop") else []:
            try:
                if mode == "suspend":
                    lifecycle.suspend(self.library, name)
                else:
                    lifecycle.stop(self.library, name)
            except VMDeskError as exc:
                say(f"{mode} {name}: {exc.message}")
        assert self.windows is not None
        self.windows.close_all()


def run(library_root: Path, page: str = "/", console: str | None = None) -> str:
    """Be the app, or hand ``page``/``console`` to the one already running; says which."""
    toolkit.check_display()
    desk = Desk(library_root)
    request = {"console": console} if console else {"page": page}
    claimed = instance.claim(library_root, request, desk.handle)
    if isinstance(claimed, dict):
        if "error" in claimed:
            raise VMDeskError(f"the running app said: {claimed['error']}", hint="try again")
        return "handed over"
    served = None
    try:
        webview = toolkit.load()  # only now: a launch that hands over never pays for it
        served = toolkit.serve(library_root)
        desk.windows = Windows(webview, served.url, served.token)
        desk.windows.open_main("/" if console else page)
        if console:
            desk.windows.console(console)
        desk.tray = _tray(desk)
        desk.windows.keep_main = desk.tray is not None
        desk.ready.set()
        toolkit.start(webview, lambda: _refresh_loop(desk))
    finally:
        desk.ended.set()
        claimed.close()
        if served is not None:
            served.stop()
        if desk.tray is not None:
            desk.tray.stop()
    return "quit"


def _tray(desk: Desk) -> Any:
    """The tray icon, or None where there is no desktop session bus (the window still is)."""
    from vmdesk.desktop import tray_menu

    def rows() -> list[tray_menu.VMRow]:
        return [
            tray_menu.VMRow(str(r["name"]), str(r.get("status") or "unknown"))
            for r in vms.summaries(desk.library)
        ]

    def visible() -> bool:
        return True

    icon: Any
    if sys.platform == "darwin":
        from vmdesk.desktop import tray_macos  # the menu bar: AppKit on the main thread

        icon = tray_macos.MenuBarTray(rows=rows, window_visible=visible, on_action=desk.act)
    else:
        from vmdesk.desktop import tray  # D-Bus, on a thread of its own

        icon = tray.Tray(rows=rows, window_visible=visible, on_action=desk.act)
    try:
        icon.start()
    except VMDeskError as exc:
        say(f"no tray icon: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
        return None
    return icon


def _refresh_loop(desk: Desk) -> None:
    """VMs change state from anywhere (CLI, web, guests): the tray follows."""
    while desk.tray is not None and not desk.ended.wait(REFRESH_SECONDS):
        try:
            desk.tray.refresh()
        except Exception as exc:  # the tray must not take the app down with it
            say(f"tray refresh: {exc}")
