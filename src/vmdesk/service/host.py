"""What this host offers VMs: CPUs, memory, guest architectures and their accelerators."""

from __future__ import annotations

import os
import sys
from typing import Any

from vmdesk.core.arch import ARCHES, host_arch
from vmdesk.core.errors import VMDeskError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vmdesk.engines.checks import Check


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


def doctor(*, probe: bool = True) -> list[Check]:
    """`vmdesk doctor`'s checks: QEMU's engine's and, on a Mac, the vz engine's (warnings
    there: QEMU runs VMs anyway). ``probe`` runs the accelerator's probe (it may boot a
    guest, for seconds)."""
    from vmdesk.engines.qemu import doctor as qemu_doctor

    checks = qemu_doctor.checks(probe_accel=probe)
    if sys.platform == "darwin":
        from vmdesk.engines.vz import doctor as vz_doctor
        from vmdesk.engines.vz.capabilities import current_host

        checks += vz_doctor.checks(current_host())
    return checks


def blocking(checks: list[Check]) -> list[Check]:
    """The failed checks that stop VMs from running here (not the warnings)."""
    return [c for c in checks if not c.ok and c.severity == "error"]
