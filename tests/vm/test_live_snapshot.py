"""Snapshots of a running VM keep its RAM: a revert resumes the guest where it was."""

from __future__ import annotations

import json

import pytest

from tests.vm.conftest import CLI
from vmdesk.core.arch import ARCHES, Arch

pytestmark = pytest.mark.vm


@pytest.mark.parametrize("arch", ARCHES)
def test_revert_restores_the_guests_memory(cli: CLI, arch: Arch) -> None:
    cli("create", "vm", "--image", "tiny-linux", "--arch", arch)
    cli("disk", "add", "vm", "--size", "1GiB")  # RAM snapshots live in a qcow2 disk
    cli("snapshot", "create", "vm", "cold")  # a disk-only one, taken while stopped
    cli("start", "vm", "--wait-ready")
    console = cli.console("vm")
    try:
        console.run("echo first > /tmp/value")  # tmpfs: only in RAM
        out = cli("snapshot", "create", "vm", "warm")
        assert "snapshot with RAM warm" in out
        console.run("echo second > /tmp/value")
        assert console.run("cat /tmp/value") == "second"
        cli("snapshot", "revert", "vm", "warm")
        assert cli.status("vm")["status"] == "running"
        assert console.run("cat /tmp/value") == "first"
        refused = cli("snapshot", "revert", "vm", "cold", ok=False)
        assert "disks only" in refused and "stop the VM" in refused
        tree = json.loads(cli("snapshot", "list", "vm", "--json"))
        assert [(s["name"], s["ram"]) for s in tree["snapshots"]] == [
            ("cold", False),
            ("warm", True),
        ]
        assert tree["current"] == tree["snapshots"][1]["id"]
        cli("snapshot", "delete", "vm", "warm")
        assert console.run("cat /tmp/value") == "first"  # deleting does not disturb it
    finally:
        console.close()
    cli("stop", "vm", "--force")
    events = [json.loads(line)["event"] for line in (cli.bundle("vm") / "logs/events.jsonl").open()]
    assert {"SNAPSHOT_SAVE", "SNAPSHOT_LOAD", "SNAPSHOT_DELETE"} <= set(events)
    tree = json.loads(cli("snapshot", "list", "vm", "--json"))
    assert [s["name"] for s in tree["snapshots"]] == ["cold"]
    cli("snapshot", "revert", "vm", "cold")  # offline again: qemu-img
