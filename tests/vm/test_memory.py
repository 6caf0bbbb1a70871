"""A running guest's memory through its balloon, booted for real: memory the guest frees
goes back to the host (free page reporting), and `vmdesk edit --memory` moves a running
VM's share within what it booted with."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.vm.conftest import CLI

pytestmark = pytest.mark.vm
# 512 MiB that are not zeroes, in big writes (busybox's yes writes a line at a time)
FILL = ("head -c 1048576 /dev/urandom > /tmp/mib && "
        "for i in $(seq 512); do cat /tmp/mib; done")  # fmt: skip
MIB = 1 << 20


def _memory(cli: CLI) -> dict[str, int]:
    return dict(json.loads(cli("show", "vm", "--json"))["memory"])


def _until(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``check`` holds (fails the test past ``timeout``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"not within {timeout:.0f} s"
        time.sleep(0.5)
    return time.monotonic() - started


def test_freed_guest_memory_goes_back_to_the_host_and_edit_moves_the_balloon(cli: CLI) -> None:
    cli("create", "vm", "--image", "tiny-linux", "--arch", "x86_64", "--memory", "1GiB")
    cli("start", "vm", "--wait-ready")
    console = cli.console("vm")
    try:
        console.run("mkdir -p /m && mount -t tmpfs -o size=700m tmpfs /m")
        console.run(f"{FILL} > /m/f", timeout=300)
        full = _memory(cli)["host_rss"]
        console.run("rm /m/f")
        _until(lambda: full - _memory(cli)["host_rss"] >= 300 * MIB, 30)
    finally:
        console.close()

    assert "for this run" in cli("edit", "vm", "--memory", "512MiB")
    _until(lambda: _memory(cli)["guest"] == 512 * MIB, 60)  # the guest inflates its balloon
    refused = cli("edit", "vm", "--memory", "2GiB", ok=False)
    assert "the 1024 MiB it booted with" in refused and "stop it" in refused
    cli("edit", "vm", "--memory", "1GiB")
    _until(lambda: _memory(cli)["guest"] == 1024 * MIB, 60)
    shown = cli("show", "vm")
    assert "memory   guest 1024 MiB of 1024 MiB, the host spends" in shown
    cli("stop", "vm", "--force")
    assert json.loads(cli("show", "vm", "--json"))["config"]["memory"] == "1GiB"  # unchanged
