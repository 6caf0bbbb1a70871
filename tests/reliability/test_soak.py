"""Soaks of the long-lived parts with the tiny guest: the web server through start/stop
cycles of a VM (by its REST API), and one VM's supervisor through live snapshot create and
revert cycles. Neither may grow in open files, threads, child processes or memory beyond
a small allowance once warm. 5 cycles each in `make test`, 200 in the full campaign."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import UI
from tests.conftest import ImageGetter
from tests.reliability import campaign
from tests.reliability.library_state import Library
from vmdesk.core import processes

pytestmark = [pytest.mark.vm, pytest.mark.timeout(3600)]
CYCLES = campaign.cases(quick=5, full=200)
WARM = 3  # cycles before the first measure: caches, imports and pools fill up
# What a part may grow by over the cycles (Python's allocator keeps some freed memory).
ALLOWED = {"fds": 4, "threads": 2, "children": 0, "rss_mib": 24}


def _measure(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(fields["Threads"]),
        "children": len(children),
        "rss_mib": int(fields["VmRSS"].split()[0]) / 1024,
    }


def _grown(before: dict[str, float], after: dict[str, float]) -> list[str]:
    return [f"{k}: {before[k]:.0f} -> {after[k]:.0f}" for k, allowed in ALLOWED.items()
            if after[k] - before[k] > allowed]  # fmt: skip


def _record(operation: str, cycles: int, grown: list[str], seconds: float) -> None:
    campaign.Result(test="soak", operation=operation, cases=cycles, failures=grown,
                    seconds=seconds).record()  # fmt: skip


def _api(ui: UI, path: str, body: dict[str, Any] | None = None) -> Any:
    token = ui.url.split("token=")[1]
    request = urllib.request.Request(
        f"{ui.base}{path}", data=json.dumps(body or {}).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=120) as reply:
        return json.load(reply)


def test_the_web_server_does_not_grow_over_start_stop_cycles(
    tmp_path: Path, tiny_image: ImageGetter
) -> None:
    tiny_image("x86_64")
    ui = UI(tmp_path / "library")
    try:
        ui.cli("create", "soak", "--image", "tiny-linux", "--arch", "x86_64")
        started, before = time.monotonic(), None
        for cycle in range(WARM + CYCLES):
            if cycle == WARM:
                before = _measure(ui.proc.pid)
            assert _api(ui, "/api/vms/soak/start")["status"] in ("running", "starting")
            assert _api(ui, "/api/vms/soak/stop", {"force": True})["status"] == "stopped"
        assert before is not None
        grown = _grown(before, _measure(ui.proc.pid))
    finally:
        ui.close()
    _record("web server: VM start/stop by the API", CYCLES, grown, time.monotonic() - started)
    assert not grown, grown


def test_a_supervisor_does_not_grow_over_live_snapshot_cycles(
    tmp_path: Path, tiny_image: ImageGetter
) -> None:
    tiny_image("x86_64")
    lib = Library(tmp_path / "library", tmp_path / "exports")
    lib.vmdesk("create", "soak", "--image", "tiny-linux", "--arch", "x86_64", "--disk-size",
               "64MiB")  # fmt: skip
    lib.vmdesk("start", "soak", "--wait-ready")
    try:
        supervisor = processes.pid_in(lib.bundle("soak") / "run" / "supervisor.pid")
        started, before = time.monotonic(), None
        for cycle in range(WARM + CYCLES):
            if cycle == WARM:
                before = _measure(supervisor)
            lib.vmdesk("snapshot", "create", "soak", f"s{cycle % 2}")
            lib.vmdesk("snapshot", "revert", "soak", f"s{cycle % 2}")
            lib.vmdesk("snapshot", "delete", "soak", f"s{cycle % 2}")
        assert before is not None
        grown = _grown(before, _measure(supervisor))
    finally:
        lib.vmdesk("stop", "soak", "--force", check=False)
    _record("a supervisor: live snapshot create/revert/delete", CYCLES, grown,
            time.monotonic() - started)  # fmt: skip
    assert not grown, grown
