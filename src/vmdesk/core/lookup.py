"""The one way to find a VM: by its name, else by its UUID or a unique prefix of it.

Standard library only: ``vmdesk start`` and ``vmdesk list`` look VMs up before anything
heavy is imported, and the service, the web app and the supervisor use the same function,
so every door gives the same answer (and the same error) for the same reference.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from vmdesk.core import layout
from vmdesk.core.errors import Conflict, NotFound

# A VM's name (the config model checks names with this pattern too).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
UUID_PREFIX_MIN = 8  # shorter prefixes would match by accident
# What may name a VM: a name, or 8+ characters of a UUID. Anything else (a path, control
# characters) is simply not found, so a reference never reaches the file system unchecked.
_REF = re.compile(f"(?:{NAME_PATTERN[1:-1]}|[0-9a-fA-F-]{{8,36}})")  # whole: fullmatch


def _not_found(ref: str) -> NotFound:
    return NotFound(f"no VM named {ref!r}", hint="see `vmdesk list` for your VMs")


def _uuid_of(bundle_dir: Path) -> str | None:
    try:
        data = json.loads((bundle_dir / layout.CONFIG).read_text(encoding="utf-8"))
        return str(data["uuid"]).lower()
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged bundle has no UUID to match; `vmdesk list` shows it broken


def find(root: Path, ref: str) -> Path:
    """The bundle directory of the VM ``ref`` names: a VM called ``ref`` first, else the
    one VM whose UUID starts with ``ref`` (8+ characters). NotFound when none does;
    Conflict naming the candidates when several do."""
    if not _REF.fullmatch(ref):
        raise _not_found(ref)
    direct = root / layout.bundle_dir_name(ref)
    if (direct / layout.CONFIG).is_file():
        return direct
    prefix = ref.lower()
    if len(prefix) < UUID_PREFIX_MIN or not root.is_dir():
        raise _not_found(ref)
    matches = sorted(
        bundle
        for bundle in root.iterdir()
        if bundle.name.endswith(layout.SUFFIX) and (_uuid_of(bundle) or "").startswith(prefix)
    )
    if not matches:
        raise _not_found(ref)
    if len(matches) > 1:
        names = ", ".join(m.name.removesuffix(layout.SUFFIX) for m in matches)
        raise Conflict(
            f"{ref!r} matches {len(matches)} VMs: {names}",
            hint="give more of the UUID, or the VM's name",
        )
    return matches[0]
