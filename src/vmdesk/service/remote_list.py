"""Every host's VMs for `vmdesk list`, the hosts asked at once: the list waits for the
slowest host, not for the sum of them. Light to import (no VM model)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vmdesk.core import hosts
from vmdesk.core.errors import VMDeskError

TIMEOUT = 5.0  # `vmdesk list` does not wait long for a host that does not answer


def vm_rows(root: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of every host's VMs, and one line per host that did not answer."""
    from vmdesk.engines.libvirt import listing

    known = hosts.load(root)
    if not known:
        return [], []

    def ask(host: hosts.Host) -> list[dict[str, Any]] | str:
        try:
            return listing.rows(host.name, host.uri, TIMEOUT)
        except VMDeskError as exc:
            return exc.message

    with ThreadPoolExecutor(max_workers=min(8, len(known))) as pool:
        answers = list(pool.map(ask, known))
    rows = [row for answer in answers if isinstance(answer, list) for row in answer]
    return rows, [answer for answer in answers if isinstance(answer, str)]
