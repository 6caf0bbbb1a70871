"""Opening the library with live status, and finding a VM's bundle in it."""

from __future__ import annotations

import re
from pathlib import Path

from vmdesk.core.bundle import Bundle
from vmdesk.core.config import NAME_PATTERN
from vmdesk.core.errors import NotFound
from vmdesk.core.library import Library
from vmdesk.supervisor import status as vmstatus

# What a VM may be called by: its name, or its UUID or a prefix of 8+ of its characters.
_REF = re.compile(NAME_PATTERN[:-1] + "|^[0-9a-fA-F-]{8,36}$")


def open(root: Path | None = None) -> Library:
    """The library at ``root`` (default: ``$VMDESK_HOME`` or the user data dir)."""
    return Library(root, status=lambda bundle: str(vmstatus.derive(bundle.path)["status"]))


def find(library: Library, ref: str) -> Bundle:
    """A VM's bundle; anything that cannot name a VM (a path, control characters) is
    simply not found, so a reference never reaches the file system unchecked."""
    if not _REF.search(ref):
        raise NotFound(f"no VM named {ref!r}", hint="see `vmdesk list` for your VMs")
    return library.find(ref)


def name_of(bundle: Bundle) -> str:
    return bundle.dir_name.removesuffix(".vmdesk")
