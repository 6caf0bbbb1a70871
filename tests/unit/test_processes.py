"""Pid files that name one process, not a number: a stale engine pid whose number another
process has now (after a host reboot) is never signalled."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmdesk.core import processes
from vmdesk.core.layout import Layout
from vmdesk.supervisor import status as vmstatus


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not ours, with a number a stale pid file might hold."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def _stale_run(bundle: Path, engine_pid_text: str) -> Layout:
    files = Layout(bundle)
    files.run.mkdir(parents=True)
    files.logs.mkdir()
    files.supervisor_pid.write_text("999999999 -\n")  # a supervisor that died
    files.engine_pid.write_text(engine_pid_text)
    return files


def test_a_record_names_the_process_and_answers_only_for_it(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    pid_file = tmp_path / "engine.pid"
    pid_file.write_text(processes.record(bystander.pid))
    assert processes.alive_as_recorded(pid_file) == bystander.pid
    pid, start = pid_file.read_text().split()
    pid_file.write_text(f"{pid} {start}0\n")  # the same number, another start
    assert processes.alive_as_recorded(pid_file) is None
    pid_file.write_text(f"{pid}\n")  # written before starts were recorded: unsure
    assert processes.alive_as_recorded(pid_file) is None
    for text in ("", "garbage", "-1 x"):
        pid_file.write_text(text)
        assert processes.alive_as_recorded(pid_file) is None


def test_a_reused_engine_pid_is_not_killed_when_the_dead_run_is_cleaned(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    start = processes.started(bystander.pid)
    files = _stale_run(tmp_path / "vm.vmdesk", f"{bystander.pid} {start}-before-a-reboot\n")
    assert vmstatus.clean_stale(files.root) is not None  # the crash is on record
    assert bystander.poll() is None, "a process that only had the engine's number was killed"
    assert not files.engine_pid.exists() and not files.supervisor_pid.exists()


def test_the_engine_a_dead_supervisor_left_running_is_killed(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    files = _stale_run(tmp_path / "vm.vmdesk", processes.record(bystander.pid))
    vmstatus.clean_stale(files.root)
    assert bystander.wait(timeout=5) == -9
