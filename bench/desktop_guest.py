"""A running desktop guest for the measures that need its agents (P14, P15): the
debian-desktop image (x86_64, TCG), booted to its session with both agents answering."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import Context, missing, vmdesk, vmdesk_cli, vmdesk_env, vmdesk_stop
from vmdesk.core.arch import Arch

ARCH: Arch = "x86_64"
NAME = "desk"
BOOT_LIMIT = 900.0  # seconds to the session with both agents, on a loaded 2-core host
# A shell in the session's X display, as its user: where the clipboard is pasted.
AS_USER = ["sudo", "-u", "alice", "env", "DISPLAY=:0", "XAUTHORITY=/home/alice/.Xauthority"]


def requires(ctx: Context) -> str | None:
    import os
    import shutil

    from vmdesk.core.errors import VMDeskError
    from vmdesk.images import desktop

    found = missing(programs=[f"qemu-system-{ARCH}"])
    if found or (os.geteuid() == 0 and shutil.which("mmdebstrap")):
        return found
    try:
        desktop.find(ARCH)
    except VMDeskError:
        return f"no {desktop.IMAGE_NAME} image: build it as root (`vmdesk image build`)"
    return None


def run_in(home: Path, argv: list[str], name: str = NAME, timeout: float = 120.0) -> str:
    """``argv``'s output, run in the guest ``name`` by its guest agent (`vmdesk exec`)."""
    done = subprocess.run([vmdesk_cli(), "exec", name, "--timeout", str(timeout), "--", *argv],
                          env=vmdesk_env(home), capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout


def agents(home: Path, name: str = NAME) -> dict[str, str]:
    done = subprocess.run([vmdesk_cli(), "status", name, "--json"], env=vmdesk_env(home),
                          capture_output=True, text=True, check=True)  # fmt: skip
    return dict(json.loads(done.stdout).get("agents", {}))


@contextmanager
def running(
    ctx: Context,
    before_start: Callable[[Path], None] | None = None,
    names: tuple[str, ...] = (NAME,),
) -> Iterator[Path]:
    """The library holding the running guests ``names`` (``before_start`` may change the
    VMs in that library first); stopped on the way out."""
    from vmdesk.images import desktop

    home = ctx.tmp / "library"
    try:
        desktop.build(ARCH)  # cached after the first time
        for name in names:
            vmdesk(home, "create", name, "--image", desktop.IMAGE_NAME, "--arch", ARCH,
                   "--user", "alice", "--cpus", "2", "--memory", "2GiB")  # fmt: skip
        if before_start is not None:
            before_start(home)
        for name in names:
            vmdesk(home, "start", name)
        deadline = time.monotonic() + BOOT_LIMIT * len(names)
        for name in names:
            serial = home / f"{name}.vmdesk" / "logs" / "serial.log"
            # The session is up (its clipboard is served), and both agents answer.
            while desktop.DESKTOP_MARKER.encode() not in serial.read_bytes() or agents(
                home, name
            ) != {"guest_agent": "connected", "spice_agent": "connected"}:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}'s agents did not answer in time")
                time.sleep(1.0)
        yield home
    finally:
        for name in names:
            vmdesk_stop(home, name)
