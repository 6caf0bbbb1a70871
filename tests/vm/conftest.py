"""The `vmdesk` command as the VM tests drive it, with a private library per test."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vmdesk.core.arch import Arch
from vmdesk.core.states import ENDED
from vmdesk.engines.qemu.process import SerialConsole
from vmdesk.images import desktop
from vmdesk.supervisor import status as vmstatus


class CLI:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "VMDESK_HOME": str(home), "VMDESK_ACCEL": "tcg"}

    def __call__(self, *args: str, ok: bool | None = True, timeout: float = 180) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "vmdesk.cli.main", *args],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, env=self.env,
            timeout=timeout,
        )  # fmt: skip
        if ok:
            assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        elif ok is False:
            assert done.returncode != 0, f"{args} should fail: {done.stdout}"
        return done.stdout + done.stderr

    def status(self, name: str) -> dict[str, str]:
        return dict(json.loads(self("status", name, "--json")))

    def bundle(self, name: str) -> Path:
        return self.home / f"{name}.vmdesk"

    def console(self, name: str) -> SerialConsole:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(vmstatus.sockets_for(self.bundle(name)).console))
        return SerialConsole(sock, None)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[CLI]:
    runner = CLI(tmp_path / "library")
    yield runner
    for bundle in runner.home.glob("*.vmdesk"):  # never leave a VM running
        if vmstatus.derive(bundle)["status"] not in ENDED:
            runner("stop", bundle.name.removesuffix(".vmdesk"), "--force", ok=None)


@pytest.fixture(scope="session")
def desktop_image() -> Callable[[Arch], desktop.DesktopImage]:
    """``desktop_image("x86_64")``: the built image (built on first use, then cached)."""
    built: dict[Arch, desktop.DesktopImage] = {}

    def get(arch: Arch) -> desktop.DesktopImage:
        if arch not in built:
            started = time.monotonic()
            built[arch] = desktop.build(arch)
            print(f"debian-desktop {arch}: ready in {time.monotonic() - started:.1f} s")
        return built[arch]

    return get
