"""MAC addresses: validating what users type, and generating stable unique ones."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection

from vmdesk.core.errors import VMDeskError

_HEX_PAIRS = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")


def normalise(value: str) -> str:
    """``52-54-00-AB-CD-EF`` / ``525400abcdef`` -> ``52:54:00:ab:cd:ef`` (unicast only)."""
    text = value.strip().lower()
    if not _HEX_PAIRS.match(text):
        raise VMDeskError(
            f"{value!r} is not a MAC address",
            hint="write six hex pairs like 52:54:00:12:34:56, or leave it empty to generate one",
        )
    digits = re.sub(r"[:-]", "", text)
    octets = [digits[i : i + 2] for i in range(0, 12, 2)]
    first = int(octets[0], 16)
    if first & 0x01:
        raise VMDeskError(
            f"{value} is a multicast address; a NIC needs a unicast one",
            hint="clear the lowest bit of the first byte (e.g. 52:...), or leave it empty",
        )
    if digits == "0" * 12:
        raise VMDeskError(f"{value} is the all-zero address", hint="leave it empty to generate one")
    return ":".join(octets)


def is_locally_administered(mac: str) -> bool:
    return bool(int(mac[:2], 16) & 0x02)


def generate(seed: str, taken: Collection[str] = ()) -> str:
    """A locally administered unicast MAC derived from ``seed`` (stable), avoiding ``taken``."""
    for attempt in range(1 << 16):
        digest = hashlib.sha256(f"{seed}/{attempt}".encode()).digest()
        first = (digest[0] & 0xFC) | 0x02  # locally administered, unicast
        mac = ":".join(f"{b:02x}" for b in (first, *digest[1:6]))
        if mac not in taken:
            return mac
    raise VMDeskError("could not find a free MAC address", hint="set one with --mac")
