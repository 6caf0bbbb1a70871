"""Where a VM's screen is shown, and what to tell someone who looks in the wrong place.

Engine-neutral: the engine's name decides (QEMU serves the screen over VNC to the web
console and VNC clients; vz shows it only in a native macOS window of the process that
runs the VM).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def place(config: Mapping[str, Any], engine: str) -> dict[str, Any]:
    """Where the screen of the VM ``config`` (a description's JSON form: its ``name`` and
    ``display``) is shown: ``{"kind": "vnc" | "window" | "none", "command": ...}``;
    ``vnc`` (QEMU: the web console, VNC clients), ``window`` (vz: ``vmdesk display NAME
    --window``), ``none``."""
    display = config.get("display") or {}
    if display.get("device", "virtio-gpu") == "none":
        return {"kind": "none", "command": None}
    if engine == "vz":
        return {"kind": "window", "command": f"vmdesk display {config['name']} --window"}
    if not display.get("vnc", True):
        return {"kind": "none", "command": None}
    return {"kind": "vnc", "command": None}


def no_window(name: str, vnc_socket: Path | None) -> tuple[str, str]:
    """The message and hint for a native-window request to a VM whose engine serves its
    screen over VNC (``vnc_socket``: the running VM's socket, None if it has none)."""
    where = (
        f"or point a VNC viewer at the unix socket {vnc_socket}"
        if vnc_socket is not None
        else f"(its VNC is off: `vmdesk edit {name} --vnc` while it is stopped)"
    )
    return (
        f"VM {name!r} runs on QEMU, which shows its screen over VNC, not in a native window",
        f"open its console in the web app (`vmdesk ui`, then {name} → Console), {where}",
    )
