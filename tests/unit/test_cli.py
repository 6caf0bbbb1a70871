"""The CLI turns library errors into one message, a hint and an exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from vmdesk import __version__


def vmdesk(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vmdesk.cli.main", *args],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_version() -> None:
    done = vmdesk("--version")
    assert done.returncode == 0
    assert __version__ in done.stdout


def test_bad_arch_is_one_line_with_a_hint_and_no_traceback() -> None:
    done = vmdesk("image", "build", "tiny-linux", "--arch", "sparc")
    assert done.returncode == 1
    assert "error: unknown architecture 'sparc'" in done.stderr
    assert "hint: use one of: x86_64, aarch64" in done.stderr
    assert "Traceback" not in done.stderr


def test_impossible_accelerator_is_refused_with_a_hint() -> None:
    done = vmdesk("accel", "--arch", "aarch64", env={"VMDESK_ACCEL": "kvm"})
    assert done.returncode == 1
    assert "KVM runs only guests of the host's architecture" in done.stderr
    assert "hint:" in done.stderr


def test_unknown_accelerator_name() -> None:
    done = vmdesk("accel", env={"VMDESK_ACCEL": "xen"})
    assert done.returncode == 1
    assert "unknown accelerator 'xen'" in done.stderr


def test_emulated_guest_accelerator_is_reported() -> None:
    done = vmdesk("accel", "--arch", "aarch64", env={"VMDESK_ACCEL": "auto"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tcg: ")


def test_image_build_without_apt_says_what_to_do(tmp_path: Path) -> None:
    bare_bin = tmp_path / "bin"  # a PATH with python but none of apt/dpkg
    bare_bin.mkdir()
    done = vmdesk(
        "image", "build", "tiny-linux", "--arch", "aarch64",
        env={"PATH": str(bare_bin), "VMDESK_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "was not found on this host" in done.stderr
    assert "needs a Debian or Ubuntu host with apt-get" in done.stderr
    assert not (tmp_path / "cache" / "images").exists() or not any(
        (tmp_path / "cache" / "images").iterdir()
    )
