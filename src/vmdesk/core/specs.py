"""The short spellings users type (``tcp:8080:80``, ``~/src:src:ro``, ``1920x1080``...).

Each parser returns the JSON form of the VM description's field, so the CLI and the web
wizard build descriptions the same way and validation stays in one place.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vmdesk.core.errors import VMDeskError
from vmdesk.core.host_paths import expand


def forward(spec: str) -> dict[str, Any]:
    """``[tcp|udp:][ADDRESS:]HOST_PORT:GUEST_PORT`` (``[::1]`` for IPv6 addresses)."""
    text = spec.strip()
    protocol = "tcp"
    head, sep, rest = text.partition(":")
    if sep and head.lower() in ("tcp", "udp"):
        protocol, text = head.lower(), rest
    address = "127.0.0.1"
    match = re.fullmatch(
        r"(?:\[(?P<v6>[^\]]+)\]:|(?P<v4>[^:\[\]]+):)?(?P<host>\d+):(?P<guest>\d+)", text
    )
    if match is None:
        raise VMDeskError(
            f"{spec!r} is not a port forward",
            hint="write it as [tcp|udp:][ADDRESS:]HOST_PORT:GUEST_PORT, e.g. tcp:8080:80",
        )
    address = match["v6"] or match["v4"] or address
    return {
        "protocol": protocol,
        "host_address": address,
        "host_port": int(match["host"]),
        "guest_port": int(match["guest"]),
    }


def default_tag(path: str) -> str:
    """A mount tag from a folder name: ``~/My Projects`` -> ``My_Projects``."""
    name = Path(path.rstrip("/")).name or "share"
    tag = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return tag.encode()[:36].decode(errors="ignore") or "share"


def share(spec: str) -> dict[str, Any]:
    """``PATH[:TAG][:ro][:virtiofs|9p]`` -> a shared folder (the path is made absolute)."""
    parts = spec.split(":")
    read_only = False
    mode = "auto"
    while len(parts) > 1 and parts[-1] in ("ro", "rw", "virtiofs", "9p", "auto"):
        flag = parts.pop()
        if flag in ("ro", "rw"):
            read_only = flag == "ro"
        else:
            mode = flag
    if len(parts) > 2:
        raise VMDeskError(
            f"{spec!r} is not a shared folder",
            hint="write it as PATH[:TAG][:ro][:virtiofs|9p], e.g. ~/src:src or ~/docs:docs:ro:9p",
        )
    path = str(expand(parts[0]).absolute())
    tag = parts[1] if len(parts) == 2 and parts[1] else default_tag(path)
    return {"tag": tag, "path": path, "read_only": read_only, "mode": mode}


def resolution(spec: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", spec)
    if match is None:
        raise VMDeskError(
            f"{spec!r} is not a resolution", hint="write it as WIDTHxHEIGHT, e.g. 1920x1080"
        )
    return int(match[1]), int(match[2])


def usb(spec: str) -> dict[str, Any]:
    vendor, sep, product = spec.strip().partition(":")
    if not sep:
        raise VMDeskError(
            f"{spec!r} is not a USB device", hint="write it as VENDOR:PRODUCT, e.g. 046d:c52b"
        )
    return {"vendor_id": vendor, "product_id": product}


def nic(spec: str) -> dict[str, Any]:
    """``nat`` (``nat:passt``, ``nat:slirp``: its backend), ``none`` or ``bridged:IFACE``."""
    mode, _, rest = spec.strip().partition(":")
    mode = mode.lower()
    if mode not in ("nat", "bridged", "none"):
        raise VMDeskError(
            f"{spec!r} is not a network mode", hint="use nat, nat:slirp, none or bridged:br0"
        )
    if mode == "nat" and rest:
        if rest.lower() not in ("auto", "passt", "slirp"):
            raise VMDeskError(f"{rest!r} is not a NAT backend", hint="use nat:passt or nat:slirp")
        return {"mode": mode, "bridge": None, "backend": rest.lower()}
    return {"mode": mode, "bridge": rest or None}


def disk(path: str, *, read_only: bool = False) -> dict[str, Any]:
    """An existing disk image; the format follows the file name (``.qcow2`` or raw)."""
    absolute = expand(path).absolute()
    fmt = "qcow2" if absolute.suffix.lower() == ".qcow2" else "raw"
    return {"file": str(absolute), "format": fmt, "read_only": read_only}
