"""Starting from a saved launch plan: fast, yet never running what a fresh start would not."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.vm.conftest import CLI
from vmdesk.core import processes

pytestmark = pytest.mark.vm


def _started(cli: CLI, name: str) -> list[dict[str, object]]:
    """The data of every STARTED event, oldest first."""
    events = (json.loads(line) for line in (cli.bundle(name) / "logs/events.jsonl").open())
    return [e["data"] for e in events if e["event"] == "STARTED"]


def _argvs(cli: CLI, name: str) -> list[str]:
    log = (cli.bundle(name) / "logs/engine.log").read_text()
    return [line for line in log.splitlines() if line.startswith("+ ")]


def _boot_once(cli: CLI, name: str) -> None:
    cli("start", name, "--wait-ready")
    cli("stop", name, "--force")


def test_a_second_start_replays_the_plan_and_the_guest_works(cli: CLI) -> None:
    cli("create", "vm", "--image", "tiny-linux", "--arch", "aarch64")
    _boot_once(cli, "vm")
    assert (cli.bundle("vm") / ".launch-plan.json").exists()
    cli("start", "vm", "--wait-ready")
    console = cli.console("vm")
    try:
        assert console.run("echo $((6*7))") == "42"
    finally:
        console.close()
    cli("stop", "vm", "--force")
    assert [s["launch"] for s in _started(cli, "vm")] == ["fresh", "replayed"]
    first, second = _argvs(cli, "vm")
    assert first == second


def test_an_edited_vm_starts_afresh_with_its_new_settings(cli: CLI) -> None:
    cli("create", "vm", "--image", "tiny-linux", "--arch", "aarch64")
    _boot_once(cli, "vm")
    cli("edit", "vm", "--memory", "320MiB")
    _boot_once(cli, "vm")
    assert [s["launch"] for s in _started(cli, "vm")] == ["fresh", "fresh"]
    assert " -m 256M " in _argvs(cli, "vm")[0] and " -m 320M " in _argvs(cli, "vm")[1]


def test_a_plan_that_disagrees_with_the_vm_is_discarded(cli: CLI) -> None:
    # A plan whose dependencies look unchanged but whose argv is not what the VM's
    # description gives (a dependency the key missed) is caught while the guest boots.
    cli("create", "vm", "--image", "tiny-linux", "--arch", "aarch64")
    _boot_once(cli, "vm")
    plan_file = cli.bundle("vm") / ".launch-plan.json"
    plan = json.loads(plan_file.read_text())
    argv = plan["spec"]["argv"]
    argv[argv.index("-m") + 1] = "200M"
    plan_file.write_text(json.dumps(plan))
    cli("start", "vm", "--wait-ready")
    status = cli.status("vm")
    assert status["status"] == "running"
    assert " -m 200M " in _argvs(cli, "vm")[1] and " -m 256M " in _argvs(cli, "vm")[2]
    assert "launch plan was stale" in (cli.bundle("vm") / "logs/supervisor.log").read_text()
    assert _started(cli, "vm")[-1]["launch"] == "fresh"
    pid = processes.pid_in(cli.bundle("vm") / "run/engine.pid")
    assert " -m 256M" in " ".join(Path(f"/proc/{pid}/cmdline").read_text().split("\0"))
    cli("stop", "vm", "--force")
    assert json.loads(plan_file.read_text())["spec"]["argv"][argv.index("-m") + 1] == "256M"


def test_a_retargeted_share_symlink_is_refused_despite_a_saved_plan(
    cli: CLI, tmp_path: Path
) -> None:
    (tmp_path / "projects").mkdir()
    (tmp_path / "secrets").mkdir()
    link = tmp_path / "current"
    os.symlink(tmp_path / "projects", link)
    cli("create", "vm", "--image", "tiny-linux", "--arch", "aarch64", "--share", f"{link}:host")
    _boot_once(cli, "vm")
    link.unlink()
    os.symlink(tmp_path / "secrets", link)  # now points outside what the user approved
    out = cli("start", "vm", ok=False)
    assert "outside the VM's bundle" in out and str(tmp_path / "secrets") in out
    assert len(_argvs(cli, "vm")) == 1  # no QEMU ran for the refused start
    status = cli.status("vm")
    assert status["status"] == "stopped" and "the last start failed" in status["reason"]
