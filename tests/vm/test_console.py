"""`vmdesk console` driven through a pseudo-terminal, as a person's terminal would."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import termios
import time

import pytest

from tests.vm.conftest import CLI

pytestmark = pytest.mark.vm


def _read_until(fd: int, needle: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"did not see {needle!r}; got {seen[-500:]!r}"
        if select.select([fd], [], [], left)[0]:
            seen += os.read(fd, 4096)
    return seen


def test_attach_type_detach_restores_the_terminal(cli: CLI) -> None:
    cli("create", "tty", "--image", "tiny-linux")
    cli("start", "tty", "--wait-ready")
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmdesk.cli.main", "console", "tty"],
        stdin=slave, stdout=slave, stderr=slave, env=cli.env, close_fds=True,
    )  # fmt: skip
    try:
        # READY comes just before the shell starts, and a shell that is still starting
        # drops what was typed: wait for its prompt (replayed, or printed a moment later).
        assert b"Ctrl-] detaches" in _read_until(master, b"vmdesk-tiny# ")
        time.sleep(1)
        os.write(master, b" echo $((6*7))\r")  # leading space: see SerialConsole.run
        assert b"42" in _read_until(master, b"\n42")
        # a second client at the same time sees the same console
        other = cli.console("tty")
        try:
            assert other.run("echo two-clients") == "two-clients"
        finally:
            other.close()
        os.write(master, b"\x1d")
        assert proc.wait(timeout=10) == 0
        _read_until(master, b"[detached]")
    finally:
        if proc.poll() is None:
            proc.kill()
        after = termios.tcgetattr(slave)
        os.close(master)
        os.close(slave)
    assert after == before  # raw mode undone
    assert cli.status("tty")["status"] == "running"  # detaching leaves the VM running
    cli("stop", "tty", "--force")
