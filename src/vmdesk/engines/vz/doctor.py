"""`vmdesk doctor` on a Mac: can this host run the vz engine, and what to do if not.

Pure over :class:`HostFacts` (plus the interpreter's path), so it is tested on Linux. Every
failure is a warning: QEMU (HVF) still runs VMs on a Mac without the vz engine.
"""

from __future__ import annotations

import os
import sys

from vmdesk.engines.checks import Check
from vmdesk.engines.vz import api_surface
from vmdesk.engines.vz.capabilities import (
    NETWORKING_ENTITLEMENT,
    VIRTUALIZATION_ENTITLEMENT,
    HostFacts,
)

PLAN = "docs/macos-test-plan.md"


def framework_binary(executable: str) -> str | None:
    """The binary a framework build of Python really runs (it re-executes Python.app)."""
    real = os.path.realpath(executable)
    marker = "/Python.framework/Versions/"
    if marker not in real:
        return None
    version_dir = (
        real[: real.index(marker) + len(marker)]
        + real[real.index(marker) + len(marker) :].split("/")[0]
    )
    return f"{version_dir}/Resources/Python.app/Contents/MacOS/Python"


def signing_commands(executable: str) -> list[str]:
    """Ad-hoc sign a private copy of the interpreter with the virtualization entitlement."""
    target = framework_binary(executable) or os.path.realpath(executable)
    return [
        f"cp {target} {target}-vz  # a private copy: never sign the system's own binary",
        f"codesign --force --sign - --entitlements vz.entitlements {target}-vz",
        f"(vz.entitlements: a plist with {VIRTUALIZATION_ENTITLEMENT} = true; see {PLAN})",
    ]


def checks(host: HostFacts, executable: str | None = None) -> list[Check]:
    executable = executable or sys.executable
    need = api_surface.version_text(api_surface.MINIMUM_MACOS)
    version = api_surface.version_text(host.macos) if host.macos else "unknown"
    out = [
        Check(
            "vz: macOS",
            host.macos is not None and host.macos >= api_surface.MINIMUM_MACOS,
            f"macOS {version} (the vz engine needs {need} or later; NVMe and saving a VM's "
            "state need 14)",
            f"upgrade to macOS {need} or later, or run VMs on QEMU (HVF)",
            "warning",
        ),
        Check(
            "vz: CPU",
            host.machine == "arm64",
            f"{host.machine}" + (" (Apple silicon)" if host.machine == "arm64" else ""),
            "the vz engine is made for Apple silicon; Intel Macs run VMs on QEMU",
            "warning",
        ),
        Check(
            "vz: PyObjC",
            host.pyobjc,
            "pyobjc-framework-Virtualization " + ("installed" if host.pyobjc else "missing"),
            "pip install 'vmdesk[macos]'",
            "warning",
        ),
    ]
    signed = VIRTUALIZATION_ENTITLEMENT in host.entitlements
    detail = f"{executable}: " + ("has" if signed else "lacks") + f" {VIRTUALIZATION_ENTITLEMENT}"
    inner = framework_binary(executable)
    if inner:
        detail += f"\na framework build: the binary that runs is {inner}"
    out.append(
        Check("vz: entitlement", signed, detail, "; ".join(signing_commands(executable)), "warning")
    )
    out.append(
        Check(
            "vz: bridged networking",
            NETWORKING_ENTITLEMENT in host.entitlements,
            ("has " if NETWORKING_ENTITLEMENT in host.entitlements else "lacks ")
            + NETWORKING_ENTITLEMENT,
            "Apple grants it to signed developers only; bridged VMs run on QEMU without it",
            "warning",
        )
    )
    out.append(
        Check(
            "vz: save/restore",
            host.save_restore,
            "saving a running VM's state: " + ("available" if host.save_restore else "no"),
            "needs macOS 14 or later on Apple silicon",
            "warning",
        )
    )
    return out
