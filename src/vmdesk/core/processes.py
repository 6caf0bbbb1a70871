"""Which process a pid file means: the pid, and when that process started.

A pid outlives its process: after the host reboots (or just in time), another process may
get the number a stale pid file holds. A pid file written with :func:`record` holds the
process's start as well, and :func:`alive_as_recorded` answers only for the same process,
so nothing is ever signalled because its number came round again."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


def boot_id() -> str:
    """This boot of the host (Linux), or "" where there is no such id."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def started(pid: int) -> str | None:
    """When process ``pid`` started, as a token that differs for another process with the
    same number: this boot's id and its start in clock ticks (Linux), else what ps says."""
    if sys.platform.startswith("linux"):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
        return f"{boot_id()}:{fields[19]}"
    import subprocess  # not on Linux's path: `vmdesk list` reads pid files

    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True,
                             text=True, timeout=5, check=False).stdout.strip()  # fmt: skip
        return out.replace(" ", "_") or None
    return None


def record(pid: int) -> str:
    """A pid file's text for process ``pid``."""
    return f"{pid} {started(pid) or '-'}\n"


def pid_in(pid_file: Path) -> int:
    """The number in a pid file (ValueError or OSError when there is none)."""
    return int(pid_file.read_text().split()[0])


def alive_as_recorded(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that very process still runs: None when it ended, when
    another has its number now, or when the file does not say when it started."""
    try:
        pid_text, start, *_ = [*pid_file.read_text().split(), "-"]
        pid = int(pid_text)
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    if start == "-" or started(pid) != start:
        return None
    return pid
