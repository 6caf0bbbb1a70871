"""Guest/host CPU architectures and the names other tools use for them."""

from __future__ import annotations

import platform
from typing import Literal

from vmdesk.core.errors import VMDeskError

Arch = Literal["x86_64", "aarch64"]
ARCHES: tuple[Arch, ...] = ("x86_64", "aarch64")

_DEBIAN_ARCH: dict[str, str] = {"x86_64": "amd64", "aarch64": "arm64"}
_ALIASES: dict[str, Arch] = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "x64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
}


def parse_arch(value: str) -> Arch:
    """Accept the usual spellings (``arm64``, ``amd64``...) and return ours."""
    arch = _ALIASES.get(value.strip().lower())
    if arch is None:
        raise VMDeskError(
            f"unknown architecture {value!r}",
            hint="use one of: " + ", ".join(ARCHES),
        )
    return arch


def host_arch() -> Arch | None:
    """The host's architecture, or None when it is neither of ours."""
    return _ALIASES.get(platform.machine().lower())


def default_arch() -> Arch:
    """A new VM's architecture when none is given: the host's (aarch64 on other hosts)."""
    return host_arch() or "aarch64"


def debian_arch(arch: Arch) -> str:
    return _DEBIAN_ARCH[arch]
