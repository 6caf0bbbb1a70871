"""The optional features a VM asks for, and whether the engine that runs it gives them.

A feature the engine can't honour is shown as unavailable (CLI `show`, the API, the web
VM page), never as on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vmdesk.engines.base import Capabilities

Description = Mapping[str, Any]  # a checked description's JSON form
Wanted = Callable[[Description], bool]
Given = Callable[[Capabilities], bool]

# name, what people call it, whether the VM asks for it, whether the engine gives it
_FEATURES: tuple[tuple[str, str, Wanted, Given], ...] = (
    ("tpm", "TPM 2.0", lambda c: bool(c["tpm"]), lambda e: e.tpm),
    ("clipboard", "clipboard sharing", lambda c: bool(c["clipboard"]), lambda e: e.clipboard),
    ("guest_agent", "guest agent", lambda c: bool(c.get("guest_agent")), lambda e: e.guest_agent),
    ("balloon", "a memory balloon", lambda c: bool(c.get("balloon")), lambda e: e.balloon),
    ("usb_passthrough", "USB passthrough", lambda c: bool(c["usb_devices"]),
     lambda e: e.usb_passthrough),
    ("port_forwards", "port forwards", lambda c: any(n["forwards"] for n in c["nics"]),
     lambda e: e.port_forwards),
    ("shares", "shared folders", lambda c: bool(c["shares"]), lambda e: bool(e.share_kinds)),
)  # fmt: skip


def of(
    config: Description, capabilities: Capabilities | None, why_none: str = ""
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
            engine = capabilities.engine
            reason = None if available else f"the {engine} engine does not offer {label} yet"
        found.append({"name": name, "label": label, "available": available, "reason": reason})
    return found
