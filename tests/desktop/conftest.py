"""A desktop of our own for the app's tests: an X server (Xvfb), a session bus
(dbus-daemon), a private library and runtime folder; and ways to look at the screen (a
screenshot read back by OCR) and at the windows (their titles and classes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

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


def _free_display() -> int:
    for number in range(90, 200):
        if (
            not Path(f"/tmp/.X11-unix/X{number}").exists()
            and not Path(f"/tmp/.X{number}-lock").exists()
        ):
            return number
    raise AssertionError("no free X display number")


@pytest.fixture
def x_display() -> Iterator[str]:
    number = _free_display()
    server = subprocess.Popen(
        [shutil.which("Xvfb") or "Xvfb", f":{number}", "-screen", "0", "1280x1024x24",
         "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    until(lambda: Path(f"/tmp/.X11-unix/X{number}").exists(), 20, "Xvfb")
    yield f":{number}"
    server.terminate()
    server.wait(10)


# A session bus that starts no services of its own (no portals, no accessibility bus).
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:tmpdir=/tmp</listen>
<policy context="default"><allow send_destination="*" eavesdrop="true"/>
<allow eavesdrop="true"/><allow own="*"/></policy></busconfig>"""


@pytest.fixture
def session_bus(tmp_path: Path) -> Iterator[str]:
    config = tmp_path / "bus.conf"
    config.write_text(BUS_CONFIG)
    daemon = subprocess.Popen(
        ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert daemon.stdout is not None
    address = daemon.stdout.readline().strip()
    assert address, "dbus-daemon printed no address"
    yield address
    daemon.terminate()
    daemon.wait(10)


@pytest.fixture
def window_manager(desktop: Desktop) -> Iterator[None]:
    """openbox on the test's display: windows get a close button (wmctrl -c presses it)."""
    wm = subprocess.Popen(["openbox"], env=desktop.env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)  # fmt: skip
    until(lambda: "openbox" in _wm_name(desktop), 20, "the window manager")
    yield
    wm.terminate()
    wm.wait(10)


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
