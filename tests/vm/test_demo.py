"""`vmdesk demo` end to end, as `make demo` runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm


def test_demo_boots_shows_console_and_powers_off(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vmdesk.cli.main", "demo", "--arch", "aarch64"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
        env={**os.environ, "VMDESK_ACCEL": "auto", "VMDESK_HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "accelerator: tcg" in out
    assert "guest ready" in out
    assert "Linux vmdesk-tiny" in out  # `uname -a` typed on the serial shell
    assert "inet 10.0.2.15/24" in out
    assert "the guest powered itself off" in out
    assert "Next" in out
    assert (tmp_path / "demo.vmdesk" / "logs" / "serial.log").is_file()  # a real VM bundle
