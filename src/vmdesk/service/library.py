"""Opening the library with live status, and finding a VM's bundle in it."""

from __future__ import annotations

from pathlib import Path

from vmdesk.core.bundle import Bundle
from vmdesk.core.library import Library
from vmdesk.supervisor import status as vmstatus


def open(root: Path | None = None) -> Library:
    """The library at ``root`` (default: ``$VMDESK_HOME`` or the user data dir)."""
    return Library(root, status=lambda bundle: str(vmstatus.derive(bundle.path)["status"]))


def find(library: Library, ref: str) -> Bundle:
    """A VM's bundle by name or UUID (prefix): the one lookup, core.lookup.find."""
    return library.find(ref)


def name_of(bundle: Bundle) -> str:
    return bundle.dir_name.removesuffix(".vmdesk")
