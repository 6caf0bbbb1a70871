"""What the QEMU engine can do, as data. Light to import: `vmdesk show` asks for it, and
every CLI command must finish in a tenth of a second."""

from __future__ import annotations

import sys

from vmdesk.engines.base import Capabilities


def capabilities() -> Capabilities:
    return Capabilities(
        engine="qemu",
        arches=("x86_64", "aarch64"),
        accelerators=("kvm", "hvf", "tcg"),
        usb_passthrough=sys.platform == "linux",
        share_kinds=("virtiofs", "9p") if sys.platform == "linux" else ("9p",),
        snapshots_with_ram=True,
        # spice-vdagent's and qemu-ga's channels, spoken by the supervisor (vmdesk.integration)
        clipboard=True,
        guest_agent=True,
        agent_sockets=True,
        balloon=True,  # virtio-balloon with free page reporting (vm_argv.py)
    )
