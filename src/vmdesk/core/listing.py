"""`vmdesk list` without the heavy imports: raw JSON reads and a plain-text table.

Kept to the standard library on purpose: listing a library of many VMs must start fast,
so it neither validates configs with pydantic nor loads rich or click.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from vmdesk.core import layout

TYPE_CHECKING = False  # not typing's: `typing` stays off the VM start path
if TYPE_CHECKING:
    from typing import Any

COLUMNS = ("name", "status", "arch", "cpus", "memory", "engine", "isolation", "os")


def is_locked(lock_file: Path) -> bool:
    """Whether some process holds the bundle's owner lock (a running VM holds it)."""
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def summary(bundle_dir: Path) -> dict[str, Any]:
    files = layout.Layout(bundle_dir)
    row: dict[str, Any] = {"name": bundle_dir.name.removesuffix(layout.SUFFIX)}
    try:
        data = json.loads(files.config.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        row.update(status="broken", error=f"{layout.CONFIG}: {exc}", path=str(bundle_dir))
        return row
    row.update(
        name=data.get("name", row["name"]),
        uuid=data.get("uuid"),
        status="running" if is_locked(files.lock) else "stopped",
        arch=data.get("arch"),
        cpus=data.get("cpus"),
        memory=data.get("memory"),
        engine=data.get("engine"),
        isolation=data.get("isolation"),
        os=guest_os(files),
        path=str(bundle_dir),
    )
    return row


def guest_os(files: layout.Layout) -> str | None:
    """The OS name the guest's agent last reported (supervisor/guest_channels.py), if any."""
    try:
        name = json.loads(files.guest_os.read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and name else None


def summaries(root: Path) -> list[dict[str, Any]]:
    if not root.is_dir():
        return []
    found = sorted(p for p in root.iterdir() if p.name.endswith(layout.SUFFIX) and p.is_dir())
    return [summary(p) for p in found]


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a table; with a HOST column first when any VM is on another host (the
    desk's own are on host 'local')."""
    if not rows:
        return "no VMs yet; create one with `vmdesk create NAME`\n"
    columns: tuple[str, ...] = COLUMNS
    if any(r.get("host") for r in rows):
        columns = ("host", *COLUMNS)
        rows = [{**r, "host": r.get("host") or "local"} for r in rows]
    cells = [[c.upper() for c in columns]]
    cells += [["" if r.get(c) is None else str(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines) + "\n"
