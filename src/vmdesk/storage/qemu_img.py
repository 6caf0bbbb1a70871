"""Running ``qemu-img`` (from qemu-utils): the only thing that writes disk images here.

Every call goes through :func:`run`, which turns a missing tool or a failure into a
:class:`StorageError` carrying qemu-img's own message and a hint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vmdesk.core.errors import HostToolMissing, StorageError

Progress = Callable[[float], None]  # percent done, 0-100
_PERCENT = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


def binary() -> str:
    found = shutil.which("qemu-img")
    if found is None:
        raise HostToolMissing(
            "qemu-img was not found",
            hint="install it: `sudo apt-get install qemu-utils` (or `make setup`); "
            "on macOS `brew install qemu`",
        )
    return found


def run(args: Sequence[str], *, what: str) -> str:
    """Run ``qemu-img ARGS``; its stdout, or StorageError saying ``what`` failed."""
    done = subprocess.run(
        [binary(), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    if done.returncode != 0:
        raise StorageError(f"{what} failed: {_message(done.stderr)}", hint=_hint(done.stderr))
    return done.stdout


def run_with_progress(args: Sequence[str], *, what: str, progress: Progress | None) -> None:
    """Run a long qemu-img command with ``-p``, reporting its percentage as it goes."""
    code, _, errors = _reporting(args, progress)
    if code != 0:
        raise StorageError(f"{what} failed: {_message(errors)}", hint=_hint(errors))


def compare(first: Path, second: Path, fmt: str, *, progress: Progress | None = None) -> str:
    """``qemu-img compare`` of two images as a guest reads them (backing files included):
    "" when they are the same, else qemu-img's words for where they differ."""
    code, out, errors = _reporting(
        ["compare", "-f", fmt, "-F", fmt, str(first), str(second)], progress
    )
    if code == 0:
        return ""
    if code == 1:  # the images differ (2 is an error): the mismatch is told on stdout
        return _message(out)
    raise StorageError(
        f"comparing {first} with {second} failed: {_message(errors)}", hint=_hint(errors)
    )


def _reporting(args: Sequence[str], progress: Progress | None) -> tuple[int, str, str]:
    """Run ``qemu-img ARGS[0] -p ARGS[1:]``: its exit code, the tail of its stdout, its
    stderr. An exception here (Ctrl-C) kills qemu-img first, so it never writes on."""
    proc = subprocess.Popen(
        [binary(), *args[:1], "-p", *args[1:]],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        buffer = b""
        while chunk := os.read(proc.stdout.fileno(), 4096):
            buffer = (buffer + chunk)[-256:]
            found = _PERCENT.findall(buffer)
            if found and progress is not None:
                progress(float(found[-1]))
        errors = proc.stderr.read().decode(errors="replace")
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    return code, buffer.decode(errors="replace"), errors


def info(path: Path, *, chain: bool = False) -> Any:
    """``qemu-img info --output=json`` (a list of layers with ``chain``); -U: the image may
    be open in a running VM, and reading its header is harmless then."""
    args = ["info", "--output=json", "-U", *(["--backing-chain"] if chain else []), str(path)]
    return json.loads(run(args, what=f"reading {path}"))


def check(path: Path, fmt: str) -> dict[str, Any]:
    """``qemu-img check`` for qcow2 (raw images have no metadata to check)."""
    if fmt != "qcow2":
        return {"check-errors": 0, "corruptions": 0, "leaks": 0}
    done = subprocess.run(
        [binary(), "check", "--output=json", "-f", fmt, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        raise StorageError(
            f"checking {path} failed: {_message(done.stderr)}", hint=_hint(done.stderr)
        ) from None
    return result


def _message(stderr: str) -> str:
    lines = [ln.removeprefix("qemu-img: ").strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else "qemu-img gave no reason"


def _hint(stderr: str) -> str:
    text = stderr.lower()
    if "lock" in text:
        return "the image is in use (a running VM?); stop the VM first"
    if "no space" in text:
        return "free some disk space and try again"
    if "permission denied" in text:
        return "check the file's permissions"
    if "could not open" in text or "no such file" in text:
        return "check the path"
    return "the image was left as it was"
