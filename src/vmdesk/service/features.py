"""The optional features a VM asks for, and whether the engine that runs it gives them.

A feature the engine can't honour is shown as unavailable (CLI `show`, the API, the web
VM page), never as on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vmdesk.core.config import VMConfig
from vmdesk.engines.base import Capabilities

# name, what people call it, whether the VM asks for it, whether the engine gives it
_FEATURES: tuple[
    tuple[str, str, Callable[[VMConfig], bool], Callable[[Capabilities], bool]], ...
] = (
    ("tpm", "TPM 2.0", lambda c: c.tpm, lambda e: e.tpm),
    ("clipboard", "clipboard sharing", lambda c: c.clipboard, lambda e: e.clipboard),
    (
        "usb_passthrough",
        "USB passthrough",
        lambda c: bool(c.usb_devices),
        lambda e: e.usb_passthrough,
    ),
    (
        "port_forwards",
        "port forwards",
        lambda c: any(n.forwards for n in c.nics),
        lambda e: e.port_forwards,
    ),
    ("shares", "shared folders", lambda c: bool(c.shares), lambda e: bool(e.share_kinds)),
)


def of(
    config: VMConfig, capabilities: Capabilities | None, why_none: str = ""
) -> list[dict[str, Any]]:
    """Each optional feature ``config`` asks for: ``{"name", "label", "available",
    "reason"}`` (``reason`` says why an unavailable one is not given). ``capabilities``
    None means no engine runs the VM here (``why_none`` says why)."""
    found = []
    reason: str | None
    for name, label, wanted, given in _FEATURES:
        if not wanted(config):
            continue
        if capabilities is None:
            available, reason = False, why_none or "no engine runs this VM here"
        else:
            available = given(capabilities)
            reason = (
                None
                if available
                else f"the {capabilities.engine} engine does not offer {label} yet"
            )
        found.append({"name": name, "label": label, "available": available, "reason": reason})
    return found
