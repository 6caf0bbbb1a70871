"""Suspend to disk and resume: the guest carries on where it was."""

from __future__ import annotations

import json

import pytest

from tests.vm.conftest import CLI
from vmdesk.core.arch import ARCHES, Arch

pytestmark = pytest.mark.vm


def _uptime(cli: CLI) -> float:
    console = cli.console("vm")
    try:
        return float(console.run("cut -d' ' -f1 /proc/uptime").split()[-1])
    finally:
        console.close()


@pytest.mark.parametrize("arch", ARCHES)
def test_suspend_then_start_resumes_the_guest(cli: CLI, arch: Arch) -> None:
    cli("create", "vm", "--image", "tiny-linux", "--arch", arch)
    cli("start", "vm", "--wait-ready")
    console = cli.console("vm")
    try:
        console.run("echo kept-in-ram > /tmp/value")
    finally:
        console.close()
    before = _uptime(cli)
    assert "suspended" in cli("suspend", "vm")
    assert cli.status("vm")["status"] == "suspended"
    state = cli.bundle("vm") / "snapshots/suspended.state"
    assert state.stat().st_size > 1 << 20
    refused = cli("edit", "vm", "--memory", "512MiB", ok=False)
    assert "suspended" in refused and "vmdesk stop vm" in refused
    assert "resumed vm" in cli("start", "vm", "--wait-ready")
    assert cli.status("vm")["status"] == "running"
    assert not state.exists()  # used up
    console = cli.console("vm")
    try:
        assert console.run("cat /tmp/value") == "kept-in-ram"
    finally:
        console.close()
    assert _uptime(cli) >= before  # the same boot, not a new one
    cli("stop", "vm", "--force")
    events = [json.loads(line)["event"] for line in (cli.bundle("vm") / "logs/events.jsonl").open()]
    assert "SUSPENDED" in events and "RESTORED" in events


def test_stop_discards_a_saved_state_and_a_half_written_one_is_ignored(cli: CLI) -> None:
    cli("create", "vm", "--image", "tiny-linux", "--arch", "aarch64")
    cli("start", "vm", "--wait-ready")
    cli("suspend", "vm")
    # What would break the saved state is refused; what needs a running VM says how to resume.
    for refused in (cli("clone", "vm", "copy", ok=False),
                    cli("snapshot", "create", "vm", "s1", ok=False)):  # fmt: skip
        assert "is suspended" in refused and "vmdesk start vm" in refused
    paused = cli("pause", "vm", ok=False)
    assert "suspended to disk" in paused and "vmdesk start vm" in paused
    assert "discarded" in cli("stop", "vm")
    assert cli.status("vm")["status"] == "stopped"
    # What a crash in the middle of `suspend` leaves: a partial state, never resumed from.
    partial = cli.bundle("vm") / "snapshots/suspended.state.partial"
    partial.write_bytes(b"QEVM half of it")
    assert cli.status("vm")["status"] == "stopped"
    out = cli("start", "vm", "--wait-ready")
    assert "ready after" in out  # a fresh boot
    cli("suspend", "vm")
    cli("delete", "vm", "--yes")  # a suspended VM can be deleted, saved state and all
    assert not cli.bundle("vm").exists()
