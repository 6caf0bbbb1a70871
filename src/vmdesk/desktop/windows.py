"""The app's windows (pywebview): the library, and one console window per VM.

Every window opens ``/signin`` (a blank page on the server's origin) and, from there, posts
the token to ``/api/session``: the token never appears in a URL or the history."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

TITLE = "VM-Desk"
SIGNIN = "signin"
WINDOW_SIZE = (1200, 800)


def signin_script(token: str, page: str) -> str:
    """JavaScript run on /signin: trade the token for the session cookie, then go."""
    return (
        "fetch('/api/session', {method: 'POST', headers: {Authorization: 'Bearer ' + "
        f"{json.dumps(token)}}}}}).then(r => {{ if (r.ok) location.replace({json.dumps(page)}); "
        "else document.body.textContent = 'VM-Desk could not sign in: ' + r.status; })"
    )


def console_page(vm: str) -> str:
    return f"/vms/{quote(vm, safe='')}/console"


class Windows:
    """What the app shows, driven from any thread (pywebview's calls are thread-safe)."""

    def __init__(self, webview: Any, base_url: str, token: str) -> None:
        self.webview = webview
        self.base = base_url.rstrip("/")
        self.token = token
        self.main: Any = None
        self.consoles: dict[str, Any] = {}
        self.keep_main = False  # with a tray: closing the library hides it
        self.quitting = False
        self._lock = threading.Lock()

    def _open(self, title: str, page: str, hidden: bool = False) -> Any:
        window = self.webview.create_window(
            title, f"{self.base}/{SIGNIN}", width=WINDOW_SIZE[0], height=WINDOW_SIZE[1],
            hidden=hidden,
        )  # fmt: skip
        script = signin_script(self.token, page)

        def signed_in() -> None:
            url = window.get_current_url() or ""
            if url.endswith(f"/{SIGNIN}"):
                window.evaluate_js(script)

        window.events.loaded += signed_in
        return window

    def open_main(self, page: str = "/") -> Any:
        self.main = self._open(TITLE, page)
        self.main.events.closing += self._main_closing
        return self.main

    def _main_closing(self) -> bool:
        """False keeps the window (hidden): the app lives on in the tray."""
        if self.keep_main and not self.quitting:
            threading.Thread(target=self.main.hide, daemon=True).start()
            return False
        return True

    def show(self, page: str | None = None) -> None:
        if page:
            self.main.load_url(f"{self.base}{page}")
        self.main.show()
        self.main.restore()

    def console(self, vm: str) -> None:
        with self._lock:
            window = self.consoles.get(vm)
            if window is None:
                window = self._open(f"{vm} — {TITLE}", console_page(vm))
                self.consoles[vm] = window
                window.events.closed += self._forget(vm, window)
                return
        window.show()
        window.restore()

    def _forget(self, vm: str, window: Any) -> Callable[[], None]:
        def closed() -> None:
            with self._lock:
                if self.consoles.get(vm) is window:
                    del self.consoles[vm]

        return closed

    def close_all(self) -> None:
        self.quitting = True
        with self._lock:
            windows = [*self.consoles.values(), self.main]
        for window in windows:
            if window is not None:
                window.destroy()
