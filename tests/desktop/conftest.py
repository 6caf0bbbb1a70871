"""A desktop of our own for the app's tests: an X server (Xvfb), a session bus
(dbus-daemon), a private library and runtime folder; and ways to look at the screen (a
screenshot read back by OCR) and at the windows (their titles and classes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from bench import own_desktop

T = TypeVar("T")


def until(check: Callable[[], T], timeout: float, what: str, every: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class Desktop:
    display: str
    bus: str
    env: dict[str, str]
    root: Path  # the library
    program: str = ""  # the vmdesk command

    def __post_init__(self) -> None:
        self.program = self.program or _vmdesk()

    def windows(self) -> dict[str, str]:
        """Mapped windows: id -> title."""
        found = subprocess.run(
            ["xdotool", "search", "--onlyvisible", "--name", "."],
            env=self.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        names = {}
        for wid in found.stdout.split():
            title = subprocess.run(
                ["xdotool", "getwindowname", wid], env=self.env, capture_output=True, text=True
            ).stdout.strip()
            names[wid] = title
        return names

    def titled(self, title: str) -> list[str]:
        return [wid for wid, name in self.windows().items() if name == title]

    def close(self, title: str) -> None:
        """As the window's close button does (the window manager asks the app)."""
        until(lambda: title in self._managed(), 20, f"the window manager to take {title!r}")
        subprocess.run(["wmctrl", "-F", "-c", title], env=self.env, check=True)

    def _managed(self) -> list[str]:
        """The titles of the windows the window manager manages."""
        shown = subprocess.run(["wmctrl", "-l"], env=self.env, capture_output=True, text=True)
        return [line.split(None, 3)[-1] for line in shown.stdout.splitlines()]

    def wm_class(self, wid: str) -> str:
        out = subprocess.run(["xprop", "-id", wid, "WM_CLASS"], env=self.env,
                             capture_output=True, text=True, check=True)  # fmt: skip
        return out.stdout.split("=", 1)[1].strip()

    def screen_text(self, shot: Path, window: str = "root", zoom: int = 100) -> str:
        """The screen (or one window) as PNG, read back by OCR (small text reads better
        zoomed)."""
        subprocess.run(["import", "-window", window, "-resize", f"{zoom}%", str(shot)],
                       env=self.env, check=True)  # fmt: skip
        return subprocess.run(
            ["tesseract", str(shot), "-"], capture_output=True, text=True, check=True
        ).stdout

    def vmdesk(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.program, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip

    def app(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen([self.program, "app", *args], env={**self.env, **env}, text=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)  # fmt: skip


def _vmdesk() -> str:
    here = Path(sys.executable).parent / "vmdesk"
    return str(here) if here.exists() else "vmdesk"


@pytest.fixture
def x_display() -> Iterator[str]:
    with own_desktop.x_server() as display:
        yield display


@pytest.fixture
def session_bus(tmp_path: Path) -> Iterator[str]:
    with own_desktop.session_bus(tmp_path) as address:
        yield address


@pytest.fixture
def window_manager(desktop: Desktop) -> Iterator[None]:
    """openbox on the test's display: windows get a close button (wmctrl -c presses it)."""
    wm = subprocess.Popen(["openbox"], env=desktop.env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)  # fmt: skip
    until(lambda: "openbox" in _wm_name(desktop), 20, "the window manager")
    yield
    wm.terminate()
    wm.wait(10)


@dataclass
class Notifications:
    """The desktop's notification server (dunst), asked through its own control tool."""

    env: dict[str, str]

    def _ctl(self, *args: str) -> str:
        return subprocess.run(["dunstctl", *args], env=self.env, capture_output=True, text=True,
                              check=True).stdout  # fmt: skip

    def shown(self) -> list[tuple[str, str]]:
        """(summary, body) of each notification it has put on the screen, oldest first."""
        if int(self._ctl("count", "displayed")) == 0 and int(self._ctl("count", "history")) == 0:
            return []
        self._ctl("close-all")  # history holds the closed ones
        held = json.loads(self._ctl("history"))["data"][0]
        return [(n["summary"]["data"], n["body"]["data"]) for n in reversed(held)]


@pytest.fixture
def notifications(desktop: Desktop) -> Iterator[Notifications]:
    server = subprocess.Popen(["dunst"], env=desktop.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    shown = Notifications(desktop.env)
    until(lambda: subprocess.run(["dunstctl", "is-paused"], env=desktop.env,
                                 capture_output=True).returncode == 0, 20, "dunst")  # fmt: skip
    yield shown
    server.terminate()
    server.wait(10)


def _wm_name(desktop: Desktop) -> str:
    shown = subprocess.run(["wmctrl", "-m"], env=desktop.env, capture_output=True, text=True)
    return shown.stdout.lower()


@pytest.fixture
def desktop(tmp_path: Path, x_display: str, session_bus: str) -> Iterator[Desktop]:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {
        **os.environ,
        "DISPLAY": x_display,
        "DBUS_SESSION_BUS_ADDRESS": session_bus,
        "XDG_RUNTIME_DIR": str(runtime),
        "VMDESK_HOME": str(tmp_path / "library"),
        "VMDESK_ACCEL": "tcg",
        "NO_AT_BRIDGE": "1",  # no accessibility bus to look for
    }
    env.pop("WAYLAND_DISPLAY", None)
    yield Desktop(x_display, session_bus, env, tmp_path / "library")
