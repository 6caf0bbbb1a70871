"""Errors keep their class across the supervisor's control socket, with a real guest: a
Conflict raised inside a running supervisor is the CLI's Conflict exit code and the web's
409; QEMU's refusal of a native window is an Unsupported, with its own exit code."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.vm.conftest import CLI
from tests.web.conftest import LiveServer
from vmdesk.core.errors import Conflict, Unsupported

pytestmark = pytest.mark.vm


def _wait_for_status(cli: CLI, name: str, wanted: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while cli.status(name)["status"] != wanted:
        assert time.monotonic() < deadline, f"{name} never became {wanted}"
        time.sleep(0.1)


def _vmdesk(cli: CLI, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vmdesk.cli.main", *args],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, env=cli.env, timeout=120,
    )  # fmt: skip


def test_a_conflict_in_the_supervisor_is_a_conflict_at_the_cli_and_the_web(cli: CLI) -> None:
    cli("create", "deaf", "--image", "tiny-linux")
    cli("start", "deaf", "--wait-ready")

    window = _vmdesk(cli, "display", "deaf", "--window")  # asked of the running supervisor
    assert window.returncode == Unsupported.exit_code == 7, window.stderr
    assert "runs on QEMU, which shows its screen over VNC" in window.stderr

    console = cli.console("deaf")
    try:
        console.run("killall -STOP dd")  # freeze the power-button watchers: button ignored
    finally:
        console.close()
    # A graceful stop that waits for the guest: the supervisor is stopping meanwhile.
    stopping = subprocess.Popen(
        [sys.executable, "-m", "vmdesk.cli.main", "stop", "deaf", "--timeout", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli.env,
    )  # fmt: skip
    web = LiveServer(cli.home)
    try:
        _wait_for_status(cli, "deaf", "stopping")
        paused = _vmdesk(cli, "pause", "deaf")
        assert paused.returncode == Conflict.exit_code == 5, paused.stderr
        assert "error: VM 'deaf' is stopping, so it cannot pause" in paused.stderr
        assert "vmdesk kill deaf" in paused.stderr
        with web.client() as api:
            refused = api.post("/api/vms/deaf/pause")
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "VM 'deaf' is stopping, so it cannot pause"
        assert cli.status("deaf")["status"] == "stopping"  # nothing else changed
    finally:
        web.close()
        cli("stop", "deaf", "--force")  # stop works while a stop is under way
        out, err = stopping.communicate(timeout=60)
    assert stopping.returncode == 0, out + err
    assert cli.status("deaf")["status"] == "stopped"
