"""What this host offers VMs: CPUs, memory, guest architectures and their accelerators."""

from __future__ import annotations

import os
from typing import Any

from vmdesk.core.arch import ARCHES, host_arch
from vmdesk.core.errors import VMDeskError


def _memory_mib() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError):
        return None


def facts() -> dict[str, Any]:
    """The host's limits and, per guest architecture, whether QEMU runs it and how."""
    from vmdesk.engines.qemu import accel, binaries

    arches = []
    for arch in ARCHES:
        entry: dict[str, Any] = {"arch": arch}
        try:
            entry["qemu"] = str(binaries.system_binary(arch))
            choice = accel.choose(arch)
            entry.update(available=True, accelerator=choice.accel, reason=choice.reason)
        except VMDeskError as exc:
            entry.update(available=False, accelerator=None, reason=exc.message, hint=exc.hint)
        arches.append(entry)
    return {
        "cpus": os.cpu_count() or 1,
        "memory_mib": _memory_mib(),
        "host_arch": host_arch(),
        "arches": arches,
    }
