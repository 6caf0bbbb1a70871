"""What both tray icons (D-Bus on Linux, the macOS menu bar) keep: the menu, rebuilt from
``rows()`` on one worker thread with refreshes folded together, its revision and tooltip,
and the menu's actions run on a pool of workers (a VM operation blocks)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable

from vmdesk.desktop import tray_menu
from vmdesk.desktop.tray_menu import MenuItem, VMRow

ACTION_THREADS = 4
log = logging.getLogger(__name__)
Changes = tuple[bool, bool, int]  # menu changed, tooltip changed, revision


class TrayState:
    def __init__(
        self,
        rows: Callable[[], list[VMRow]],
        window_visible: Callable[[], bool],
        on_action: Callable[[tuple[str, ...]], None],
        *,
        what: str,
        threads: str,
    ) -> None:
        self._rows = rows
        self._window_visible = window_visible
        self._on_action = on_action
        self._what = what  # "the tray icon": its log lines say which
        self._lock = threading.Lock()
        self._root = MenuItem(tray_menu.ROOT_ID, "")
        self._revision = 0
        self._tooltip = ""
        self._refresh_pending = False
        self._stopped = False
        self._menu_worker = concurrent.futures.ThreadPoolExecutor(1, f"{threads}-menu")
        self._actions = concurrent.futures.ThreadPoolExecutor(ACTION_THREADS, f"{threads}-do")

    def refresh(self) -> None:
        """Rebuild the menu from ``rows()`` on the menu worker; the icon shows it when it
        changed. Returns at once; calls while one is queued fold into it."""
        with self._lock:
            if self._refresh_pending or self._stopped or not self._shown():
                return
            self._refresh_pending = True
        with contextlib.suppress(RuntimeError):  # stop() came in between
            self._menu_worker.submit(self._refresh_now)

    def menu(self) -> tuple[int, MenuItem]:
        """The revision and the menu the icon shows (or is about to)."""
        with self._lock:
            return self._revision, self._root

    @property
    def tooltip(self) -> str:
        with self._lock:
            return self._tooltip

    def notify(self, summary: str, body: str) -> None:
        """Tell the user of a menu action that failed, where the icon's desktop can (the
        app has printed it already). The macOS menu bar shows no notifications yet."""

    def _shown(self) -> bool:
        """Whether the icon is up, so that a refresh has somewhere to go."""
        return True

    def _changed(self, changes: Changes) -> None:
        """On the menu worker, after a refresh's rebuild: bring the icon up to date."""
        raise NotImplementedError

    def _end_workers(self) -> None:
        with self._lock:
            self._stopped = True
        self._menu_worker.shutdown(wait=False, cancel_futures=True)
        self._actions.shutdown(wait=False)  # an action under way (a VM stopping) ends itself

    def _rebuild(self) -> Changes:
        """Never on the icon's own loop or thread: rows() may be slow."""
        try:
            rows = list(self._rows())
            root = tray_menu.build_menu(rows, self._window_visible())
        except Exception:
            log.exception("%s's menu could not be rebuilt; it keeps the last one", self._what)
            with self._lock:
                return False, False, self._revision
        tip = tray_menu.tooltip(rows)
        with self._lock:
            menu_changed, tip_changed = root != self._root, tip != self._tooltip
            if menu_changed:
                self._root = root
                self._revision += 1
            self._tooltip = tip
            return menu_changed, tip_changed, self._revision

    def _refresh_now(self) -> None:
        with self._lock:
            self._refresh_pending = False  # a refresh() from now on must rebuild again
        self._changed(self._rebuild())

    def _act(self, action: tuple[str, ...]) -> None:
        def run() -> None:
            try:
                self._on_action(action)
            except Exception:
                log.exception("%s's action %r failed", self._what, action)

        with contextlib.suppress(RuntimeError):  # stopped: nothing is left to act on
            self._actions.submit(run)
