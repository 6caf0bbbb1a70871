"""`vmdesk clipboard NAME --sync`: this desktop's clipboard and a guest's, kept in step both
ways until Ctrl-C.

The host's side goes through the usual tools: wl-paste/wl-copy on Wayland, xclip on X11
(and NSPasteboard on macOS, through PyObjC). The host's clipboard is polled (these tools
have no portable change event); the guest's changes arrive by a long poll on the VM's
supervisor. What was just copied one way is remembered, so it does not come back.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Protocol

from vmdesk.core.errors import HostToolMissing
from vmdesk.core.library import Library

TEXT = "text/plain;charset=utf-8"
PNG = "image/png"
POLL = 0.4  # seconds between looks at the host's clipboard
_TOOL_TIMEOUT = 5.0
_ENDING = (signal.SIGINT, signal.SIGTERM)


class HostClipboard(Protocol):
    def read(self) -> tuple[str, bytes] | None:
        """The clipboard as (TEXT or PNG, bytes), text first; None when empty."""

    def write(self, kind: str, data: bytes) -> None: ...


class _Tools:
    """A clipboard read and written by command-line tools (xclip, wl-clipboard)."""

    def __init__(
        self, list_types: list[str], read: list[str], write: list[str], text: str = TEXT
    ) -> None:
        self._list, self._read, self._write = list_types, read, write
        self._text = text  # what the tool calls text: X11 clients ask for UTF8_STRING

    def _run(self, argv: list[str]) -> bytes | None:
        done = subprocess.run(argv, capture_output=True, timeout=_TOOL_TIMEOUT, check=False)
        return done.stdout if done.returncode == 0 else None

    def read(self) -> tuple[str, bytes] | None:
        types = (self._run(self._list) or b"").decode(errors="replace").split()
        for kind, names in ((TEXT, ("UTF8_STRING", TEXT, "text/plain")), (PNG, (PNG,))):
            name = next((n for n in names if n in types), None)
            if name is not None:
                data = self._run([*self._read, name])
                if data is not None:
                    return kind, data
        return None

    def write(self, kind: str, data: bytes) -> None:
        # The tool forks to serve the selection until another owner takes it: its output
        # must not be a pipe we wait on.
        target = self._text if kind == TEXT else kind
        subprocess.run([*self._write, target], input=data, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=_TOOL_TIMEOUT, check=False)  # fmt: skip


class _MacPasteboard:
    """NSPasteboard through PyObjC (on paper: no Mac was at hand to check it)."""

    def __init__(self) -> None:
        import AppKit  # type: ignore[import-not-found]

        self._appkit = AppKit
        self._board = AppKit.NSPasteboard.generalPasteboard()

    def read(self) -> tuple[str, bytes] | None:
        text = self._board.stringForType_(self._appkit.NSPasteboardTypeString)
        if text is not None:
            return TEXT, str(text).encode()
        png = self._board.dataForType_(self._appkit.NSPasteboardTypePNG)
        return (PNG, bytes(png)) if png is not None else None

    def write(self, kind: str, data: bytes) -> None:
        import Foundation  # type: ignore[import-not-found]

        self._board.clearContents()
        if kind == TEXT:
            self._board.setString_forType_(data.decode(), self._appkit.NSPasteboardTypeString)
        else:
            blob = Foundation.NSData.dataWithBytes_length_(data, len(data))
            self._board.setData_forType_(blob, self._appkit.NSPasteboardTypePNG)


def host_clipboard(selection: str = "clipboard") -> HostClipboard:
    """This desktop's clipboard, through whatever it runs."""
    if sys.platform == "darwin":
        return _MacPasteboard()
    if os.environ.get("WAYLAND_DISPLAY") and shutil.which("wl-paste") and shutil.which("wl-copy"):
        primary = ["--primary"] if selection == "primary" else []
        return _Tools(["wl-paste", *primary, "--list-types"], ["wl-paste", *primary, "--type"],
                      ["wl-copy", *primary, "--type"])  # fmt: skip
    if os.environ.get("DISPLAY") and shutil.which("xclip"):
        base = ["xclip", "-selection", selection]
        return _Tools([*base, "-o", "-t", "TARGETS"], [*base, "-o", "-t"], [*base, "-i", "-t"],
                      text="UTF8_STRING")  # fmt: skip
    raise HostToolMissing(
        "no clipboard tool for this desktop was found",
        hint="install wl-clipboard (Wayland) or xclip (X11), e.g. `sudo apt install xclip`",
    )


def _digest(kind: str, data: bytes) -> str:
    return kind + ":" + hashlib.sha256(data).hexdigest()


class Bridge:
    """The state of one --sync: what each side last had, so nothing echoes back."""

    def __init__(self, library: Library, vm: str, selection: str, host: HostClipboard) -> None:
        self.library, self.vm, self.selection, self.host = library, vm, selection, host
        self.last: str | None = None  # the digest of what both sides hold now
        self.lock = threading.Lock()
        self.copied = 0  # transfers made, either way

    def host_changed(self) -> bool:
        """Offer the host's clipboard to the guest if it changed; whether it did."""
        from vmdesk.service import guest

        found = self.host.read()
        if found is None:
            return False
        digest = _digest(*found)
        with self.lock:
            if digest == self.last:
                return False
            self.last = digest
        guest.set_clipboard(self.library, self.vm, found[1], kind=found[0],
                            selection=self.selection)  # fmt: skip
        self.copied += 1
        return True

    def guest_changed(self) -> bool:
        """Copy the guest's clipboard to the host if the guest owns something new."""
        from vmdesk.service import guest

        kind, data, owner = guest.clipboard(self.library, self.vm, selection=self.selection)
        if owner != "guest" or kind not in (TEXT, PNG) or data is None:
            return False
        digest = _digest(kind, data)
        with self.lock:
            if digest == self.last:
                return False
            self.last = digest
        self.host.write(kind, data)
        self.copied += 1
        return True

    def follow_guest(self, stop: threading.Event) -> None:
        """Long-poll the guest's clipboard until ``stop``."""
        from vmdesk.service import guest

        # What the guest holds when the bridge starts stays there: the host's side wins.
        seen = int(guest.watch_clipboard(self.library, self.vm, -1, wait=0.0)["generation"])
        while not stop.is_set():
            changed = guest.watch_clipboard(self.library, self.vm, seen, wait=10.0)
            if changed["generation"] != seen:
                seen = int(changed["generation"])
                self.guest_changed()


def run(library: Library, vm: str, selection: str = "clipboard") -> None:
    """Bridge until Ctrl-C (or the VM stops: the error says so)."""
    from vmdesk.cli.output import console

    bridge = Bridge(library, vm, selection, host_clipboard(selection))
    stop = threading.Event()
    failed: list[BaseException] = []

    def guest_side() -> None:
        try:
            bridge.follow_guest(stop)
        except BaseException as exc:  # reported by the main thread
            failed.append(exc)
            stop.set()

    # Ctrl-C (or a TERM) only asks the loop to end: an interrupt raised in the middle of a
    # tool's run or a supervisor call could leave either half done.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _ENDING}
    try:
        bridge.host_changed()  # the host's clipboard first, before the guest's side listens
        threading.Thread(target=guest_side, daemon=True).start()
        console.print(f"[green]✓[/] {vm}'s clipboard follows this desktop's, both ways "
                      "(Ctrl-C ends)")  # fmt: skip
        while not stop.is_set():
            bridge.host_changed()
            stop.wait(POLL)
    finally:
        stop.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed:
        raise failed[0]
    console.print(f"[green]✓[/] stopped after {bridge.copied} copies")
    time.sleep(0)  # let the daemon thread see stop before the interpreter goes
