"""What the app is asked to open — a ``vmdesk://`` link, a ``NAME.vmdesk`` bundle (a path or
a ``file://`` URI, as a file manager or ``xdg-open`` hands it over), or nothing — as the web
UI page to show and, for a bundle from outside the library, the bundle to import first.

Pure: nothing is read or written. Paths are made absolute with their symlinks followed, so a
library reached through a link is still known as the library. A VM that does not exist is
the page's to say: a link clicked in a browser has no terminal to print an error on.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, quote, unquote, urlsplit

from vmdesk.core import layout
from vmdesk.core.errors import VMDeskError
from vmdesk.core.lookup import NAME_PATTERN

SCHEME = "vmdesk"
_NAME = re.compile(NAME_PATTERN)
# "scheme://..." (and "vmdesk:" alone) is a URL; anything else is a path, so that a file
# named "a:b.vmdesk" is still a file.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://|vmdesk:", re.IGNORECASE)
_LINK_FORMS = "give vmdesk://vm/NAME, vmdesk://console/NAME, vmdesk://new or a NAME.vmdesk bundle"


class BadLink(VMDeskError):
    """``vmdesk open`` was given something that is neither a VM-Desk link nor a bundle."""

    exit_code = 2  # a usage error, as click's own


@dataclass(frozen=True)
class Target:
    """Where to go: ``page`` of the web UI, or first ``import_from`` (a bundle from outside
    the library; its page is known only once it is imported, under its description's name).
    ``console`` names the VM of a console page: the app shows consoles in their own window."""

    page: str | None
    import_from: Path | None = None
    console: str | None = None


def vm_page(name: str, *, console: bool = False) -> str:
    """The web UI page of the VM ``name`` (checked: a name never carries a path into it)."""
    if not _NAME.fullmatch(name):
        raise BadLink(
            f"{name!r} is not a VM name",
            hint="a VM name is letters, digits, '.', '_' and '-', starting with a letter or digit",
        )
    page = "/vms/" + quote(name, safe="")
    return page + "/console" if console else page


def resolve(arg: str | None, library_root: Path) -> Target:
    """The target ``arg`` names; ``library_root`` tells a bundle of ours from a foreign one."""
    if not arg:
        return Target("/")
    if _URL.match(arg):
        url = urlsplit(arg)
        if url.scheme.lower() == SCHEME:
            return _link_target(url, arg)
        if url.scheme.lower() != "file":
            raise BadLink(f"cannot open {arg!r}: not a {SCHEME}:// link", hint=_LINK_FORMS)
        if url.netloc not in ("", "localhost") or url.query or url.fragment:
            raise BadLink(f"cannot open {arg!r}: not a file on this computer", hint=_LINK_FORMS)
        return _bundle_target(Path(unquote(url.path)), library_root, arg)
    return _bundle_target(Path(arg).expanduser(), library_root, arg)


def _link_target(url: SplitResult, arg: str) -> Target:
    """A vmdesk:// link's page: the kind of page is the host part, the VM its path."""
    if url.query or url.fragment:
        raise BadLink(f"cannot open {arg!r}: a {SCHEME}:// link has no query", hint=_LINK_FORMS)
    kind = url.netloc.lower()
    rest = url.path.removesuffix("/")  # a trailing slash, as some browsers add
    if kind == "" and rest == "":
        return Target("/")
    if kind == "new" and rest == "":
        return Target("/new")
    if kind in ("vm", "console") and rest.startswith("/"):
        # Decoded first, then checked whole: "%2F" or "%2e%2e" cannot smuggle a path in.
        name = unquote(rest[1:])
        if kind == "vm":
            return Target(vm_page(name))
        return Target(vm_page(name, console=True), console=name)
    raise BadLink(f"cannot open {arg!r}: no such VM-Desk page", hint=_LINK_FORMS)


def _bundle_target(path: Path, library_root: Path, arg: str) -> Target:
    if path.name == "" or not path.name.endswith(layout.SUFFIX):
        raise BadLink(f"cannot open {arg!r}: not a VM bundle", hint=_LINK_FORMS)
    where = Path(os.path.realpath(path))
    if where.parent == Path(os.path.realpath(library_root)):
        return Target(vm_page(where.name.removesuffix(layout.SUFFIX)))  # one of ours
    return Target(None, import_from=where)
