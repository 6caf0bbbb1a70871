"""A desktop of one's own for the app's benchmark and tests: an X server (Xvfb) on a free
display and a session bus (dbus-daemon) that starts no services, both ended on the way out."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# A session bus that starts no services of its own (no portals, no accessibility bus).
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:tmpdir=/tmp</listen>
<policy context="default"><allow send_destination="*" eavesdrop="true"/>
<allow eavesdrop="true"/><allow own="*"/></policy></busconfig>"""
START_TIMEOUT = 20.0


def free_display() -> int:
    for number in range(90, 250):
        if (
            not Path(f"/tmp/.X11-unix/X{number}").exists()
            and not Path(f"/tmp/.X{number}-lock").exists()
        ):
            return number
    raise RuntimeError("no free X display number")


@contextmanager
def x_server() -> Iterator[str]:
    """An Xvfb; yields its DISPLAY once its socket is there."""
    number = free_display()
    server = subprocess.Popen(
        [shutil.which("Xvfb") or "Xvfb", f":{number}", "-screen", "0", "1280x1024x24",
         "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not Path(f"/tmp/.X11-unix/X{number}").exists():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Xvfb :{number} did not start")
            time.sleep(0.05)
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(10)


@contextmanager
def session_bus(folder: Path) -> Iterator[str]:
    """A dbus-daemon (its config written in ``folder``); yields its address."""
    config = folder / "bus.conf"
    config.write_text(BUS_CONFIG)
    daemon = subprocess.Popen(
        ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        address = daemon.stdout.readline().strip() if daemon.stdout else ""
        if not address:
            raise RuntimeError("dbus-daemon printed no address")
        yield address
    finally:
        daemon.terminate()
        daemon.wait(10)
