"""The `vmdesk` command as the VM tests drive it, with a private library per test."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmdesk.core.states import ENDED
from vmdesk.engines.qemu.process import SerialConsole
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
