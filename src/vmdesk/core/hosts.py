"""Other hosts the library knows: libvirt daemons named by a connection URI.

Kept in the library's ``hosts.json``. Only the name and the URI are stored: credentials
come from the user's SSH agent or libvirt's own authentication, never from VM-Desk, so a
URI carrying a password is refused. A VM on a host is written ``HOST:VM`` (``lab:dev``).
Standard library only: ``vmdesk list`` reads this before anything heavy is imported.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from vmdesk.core.errors import ConfigError, Conflict, NotFound, Problem

FILE = "hosts.json"
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
LOCAL = "local"  # the desk itself: not a name another host may take
SCHEMES = ("qemu", "qemu+ssh", "qemu+unix", "qemu+tls", "qemu+tcp", "qemu+libssh2",
           "qemu+libssh")  # fmt: skip
LOCAL_SCHEMES = ("qemu", "qemu+unix")  # a daemon on this machine: no host in the URI
PATHS = ("/system", "/session")
ACCELS = ("auto", "kvm", "tcg")
THIS_MACHINE = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Host:
    name: str
    uri: str
    accel: str = "auto"  # auto: KVM where the host's libvirt offers it (see remote)

    @property
    def remote(self) -> bool:
        """Whether it is another machine (not this one's own daemon, however reached)."""
        return is_remote(self.uri)


def is_remote(uri: str) -> bool:
    host = urlsplit(uri).hostname
    return bool(host) and host not in THIS_MACHINE


def _bad(field: str, message: str, hint: str) -> ConfigError:
    return ConfigError([Problem(field, message, hint)])


def check_name(name: str) -> str:
    if not HOST_NAME.fullmatch(name) or name == LOCAL:
        raise _bad(
            "name", f"{name!r} can't name a host",
            "use up to 32 letters, digits, '-' or '_' (and not 'local', which is this one)",
        )  # fmt: skip
    return name


def check_uri(uri: str) -> str:
    """A libvirt QEMU URI with no password in it (e.g. qemu+ssh://user@lab/system)."""
    example = "e.g. qemu:///system or qemu+ssh://user@lab/system"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise _bad("uri", f"{uri!r} is not a URI", example) from None
    if parts.scheme not in SCHEMES:
        raise _bad("uri", f"{uri!r}: VM-Desk drives libvirt's QEMU driver only", example)
    if parts.path not in PATHS:
        raise _bad("uri", f"{uri!r} names no libvirt daemon (/system or /session)", example)
    if parts.password is not None:
        raise _bad(
            "uri", "the URI holds a password, and VM-Desk stores no credentials",
            "drop it: use an SSH key in your agent, or libvirt's own authentication",
        )  # fmt: skip
    if parts.scheme not in LOCAL_SCHEMES and not parts.hostname:
        raise _bad("uri", f"{uri!r} names no host", example)
    return uri


def load(root: Path) -> list[Host]:
    try:
        data = json.loads((root / FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise _bad("", f"{root / FILE} can't be read ({exc})", "fix or remove that file") from None
    entries = data.get("hosts") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise _bad("", f"{root / FILE} lists no hosts", "fix or remove that file")
    return [
        Host(str(e["name"]), str(e["uri"]), str(e.get("accel") or "auto"))
        for e in entries
        if isinstance(e, dict) and "name" in e and "uri" in e
    ]


def _save(root: Path, hosts: list[Host]) -> None:
    """Written whole to a temporary file and renamed over the old one: never half a file."""
    root.mkdir(parents=True, exist_ok=True)
    entries = [{"name": h.name, "uri": h.uri, "accel": h.accel} for h in hosts]
    text = json.dumps({"hosts": entries}, indent=2)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".hosts-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text + "\n")
        os.replace(tmp, root / FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def get(root: Path, name: str) -> Host:
    for host in load(root):
        if host.name == name:
            return host
    raise NotFound(f"no host named {name!r}", hint="see `vmdesk host list`")


def add(root: Path, name: str, uri: str, accel: str = "auto") -> Host:
    if accel not in ACCELS:
        raise _bad("accel", f"unknown accelerator {accel!r}", "use " + ", ".join(ACCELS))
    host = Host(check_name(name), check_uri(uri), accel)
    hosts = load(root)
    if any(h.name == name for h in hosts):
        raise Conflict(f"a host named {name!r} exists", hint=f"`vmdesk host rm {name}` first")
    _save(root, [*hosts, host])
    return host


def remove(root: Path, name: str) -> Host:
    host = get(root, name)
    _save(root, [h for h in load(root) if h.name != name])
    return host


def split(ref: str) -> tuple[str | None, str]:
    """``lab:dev`` -> ("lab", "dev"); a reference without a host -> (None, ref)."""
    host, sep, vm = ref.partition(":")
    if not sep:
        return None, ref
    if host == LOCAL:
        return None, vm
    return host, vm
