"""A running VM's memory through its balloon: what the guest has, what the host spends on
it, and lowering (or raising back up to the boot size) the guest's share live."""

from __future__ import annotations

from typing import Any

from vmdesk.core.library import Library
from vmdesk.service.library import find
from vmdesk.service.settings import Settings
from vmdesk.supervisor import client
from vmdesk.supervisor import status as vmstatus


def memory(library: Library, ref: str) -> dict[str, Any]:
    """``{"booted", "guest", "host_rss"}`` in bytes for a running VM."""
    reply = client.call(find(library, ref), "memory")
    reply.pop("ok", None)
    return reply


def set_memory(library: Library, ref: str, size: str | int) -> dict[str, Any]:
    """Give a running guest ``size`` (at most what it booted with) for this run; its
    description, and so its next boot, keeps its size."""
    from vmdesk.core.units import parse_size

    reply = client.call(find(library, ref), "memory", target=parse_size(size))
    reply.pop("ok", None)
    return reply


def applies_live(library: Library, ref: str, settings: Settings) -> bool:
    """Whether an edit is a running VM's memory alone: the one change made live."""
    changed = {key for key, value in settings.items() if value not in (None, (), [])}
    if changed != {"memory"}:
        return False
    return vmstatus.derive(find(library, ref).path)["status"] in ("running", "paused")
