"""A hypervisor that stops answering: QEMU frozen with SIGSTOP under a running tiny guest.
The VM shows as not responding (not "starting", not "running"), and `vmdesk stop` and
`vmdesk kill` still end it within their timeouts; the VM then starts again."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ImageGetter
from tests.reliability import campaign
from tests.reliability.library_state import Library
from vmdesk.core import processes

pytestmark = pytest.mark.vm
STOP_TIMEOUT = 3  # what `vmdesk stop --timeout` is given
ENDS_WITHIN = 20.0  # the button (2 s), quit (2 s), the grace (5 s), a kill, and CLI starts


@pytest.fixture
def lib(tmp_path: Path, tiny_image: ImageGetter) -> Iterator[Library]:
    tiny_image("x86_64")
    lib = Library(tmp_path / "library", tmp_path / "exports")
    lib.vmdesk("create", "vm", "--image", "tiny-linux", "--arch", "x86_64")
    yield lib
    for pid in _engines(lib):  # never leave a frozen QEMU behind
        os.kill(pid, signal.SIGKILL)


def _engines(lib: Library) -> list[int]:
    pid_file = lib.bundle("vm") / "run" / "engine.pid"
    pid = processes.alive_as_recorded(pid_file) if pid_file.exists() else None
    return [pid] if pid is not None else []


def _frozen(lib: Library) -> int:
    lib.vmdesk("start", "vm", "--wait-ready")
    (pid,) = _engines(lib)
    os.kill(pid, signal.SIGSTOP)
    return pid


def _status(lib: Library) -> str:
    return str(json.loads(lib.vmdesk("status", "vm", "--json").stdout)["status"])


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"


def test_a_frozen_qemu_is_not_responding_and_stop_and_kill_still_end_it(lib: Library) -> None:
    started = time.monotonic()
    failures: list[str] = []
    pid = _frozen(lib)
    if (seen := _status(lib)) != "unresponsive":
        failures.append(f"a frozen QEMU's VM showed as {seen!r}")
    listed = json.loads(lib.vmdesk("list", "--json").stdout)[0]["status"]
    if listed != "unresponsive":
        failures.append(f"vmdesk list showed it as {listed!r}")
    took = time.monotonic()
    done = lib.vmdesk("stop", "vm", "--timeout", str(STOP_TIMEOUT), check=False)
    took = time.monotonic() - took
    if done.returncode != 0 or "forced off" not in done.stdout:
        failures.append(f"stop: {done.returncode} {done.stdout.strip()} {done.stderr.strip()}")
    if took > ENDS_WITHIN or not _gone(pid) or _status(lib) != "stopped":
        failures.append(f"stop took {took:.1f} s; QEMU gone: {_gone(pid)}; now {_status(lib)}")

    pid = _frozen(lib)  # it starts again, and freezes again
    took = time.monotonic()
    done = lib.vmdesk("kill", "vm", check=False)
    took = time.monotonic() - took
    if done.returncode != 0 or took > ENDS_WITHIN or not _gone(pid):
        failures.append(f"kill: {done.returncode} after {took:.1f} s: {done.stderr.strip()}")
    result = campaign.Result(test="hung parts", cases=2, failures=failures,
                             operation="QEMU frozen (SIGSTOP): status, stop, kill")  # fmt: skip
    result.seconds = time.monotonic() - started
    result.record()
    assert not failures, "\n".join(failures)
