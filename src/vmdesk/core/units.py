"""Human sizes: ``2GiB``, ``512M``, ``1.5G``. Binary units throughout, as QEMU reads them."""

from __future__ import annotations

import re

from vmdesk.core.errors import VMDeskError

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
MiB = 1 << 20


def parse_size(value: str | int, *, default_unit: str = "M") -> int:
    """Bytes in ``value``; a bare number counts in ``default_unit`` (MiB, as QEMU's -m)."""
    if isinstance(value, bool):
        raise VMDeskError(f"{value!r} is not a size", hint="write it like 512MiB or 2GiB")
    if isinstance(value, int):
        value = f"{value}{default_unit}"
    match = _SIZE.match(value)
    if match is None:
        raise VMDeskError(
            f"{value!r} is not a size", hint="write it like 512MiB, 2GiB or 2G (binary units)"
        )
    number, unit = match.groups()
    if not unit and value.strip().isdigit():
        unit = default_unit
    return int(float(number) * _UNITS[unit.lower()])


def format_size(size: int) -> str:
    """The shortest exact spelling: 2147483648 -> ``2GiB``, 1610612736 -> ``1536MiB``."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def human_size(size: int) -> str:
    """Rounded, for people: 1288490188 -> ``1.2 GiB``, 200704 -> ``196 KiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" or value >= 100 else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
