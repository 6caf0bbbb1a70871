"""Finding the QEMU programs on the host and asking them what they are."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

from vmdesk.core.arch import Arch
from vmdesk.core.errors import HostToolMissing

_PACKAGE: dict[Arch, str] = {"x86_64": "qemu-system-x86", "aarch64": "qemu-system-arm"}


def system_binary(arch: Arch) -> Path:
    """The ``qemu-system-ARCH`` program that runs ``arch`` guests."""
    name = f"qemu-system-{arch}"
    found = shutil.which(name)
    if found is None:
        raise HostToolMissing(
            f"{name} was not found",
            hint=f"install QEMU: `sudo apt-get install {_PACKAGE[arch]}` (or `make setup`); "
            "on macOS `brew install qemu`",
        )
    return Path(found)


@cache
def version(binary: Path) -> tuple[int, int, int]:
    """QEMU's version as (major, minor, micro), read from ``--version``."""
    out = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", out)
    if match is None:
        return (0, 0, 0)
    major, minor, micro = (int(g) for g in match.groups())
    return (major, minor, micro)
