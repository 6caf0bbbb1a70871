"""VM descriptions this VM-Desk has checked already, remembered by digest.

Checking a description means importing and building the pydantic model, about a tenth of a
second: more than a whole `vmdesk show` may take. But a description's text fully decides
whether it is valid (the checks of the model do not look at the host; those that do run
apart, in core.validation), so a text that passed once with the same model passes again.
Each text that passed, in the canonical form VM-Desk writes, is remembered as an empty
file named by the digest of the model's own sources and the text; reading it again needs
only ``json.loads``. A text edited by hand, or a model changed by an upgrade, has another
digest and is checked in full. Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
from pathlib import Path

from vmdesk.core import paths

KEEP = 2000  # remembered texts; past that the memory starts again (each is an empty file)
# What decides whether a text is valid: the model and the modules its checks use.
_MODEL_SOURCES = ("config.py", "units.py", "arch.py", "lookup.py", "macs.py")
_model_digest: str | None = None


def _model() -> str:
    """A digest of the model's sources and the pydantic release that runs them."""
    global _model_digest
    if _model_digest is None:
        h = hashlib.sha256()
        here = Path(__file__).parent
        for name in _MODEL_SOURCES:
            h.update((here / name).read_bytes())
        spec = importlib.util.find_spec("pydantic")  # finds it without importing it
        if spec is not None and spec.origin is not None:
            h.update((Path(spec.origin).parent / "version.py").read_bytes())
        _model_digest = h.hexdigest()
    return _model_digest


def _marker(text: str) -> Path:
    digest = hashlib.sha256((_model() + "\0" + text).encode("utf-8")).hexdigest()
    return paths.cache_dir() / "checked-configs" / digest


def known(text: str) -> dict[str, object] | None:
    """The description in ``text`` if this model checked exactly this text before."""
    try:
        if not _marker(text).exists():
            return None
        data = json.loads(text)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remember(text: str, checked: dict[str, object]) -> None:
    """Note that ``text`` passed the model's checks; ``checked`` is what they made of it.
    Only a canonical text (what VM-Desk itself writes) is noted, so reading it back gives
    exactly the checked description. Best effort: a read-only cache only costs speed."""
    try:
        marker = _marker(text)
        if marker.exists() or json.loads(text) != checked:
            return  # remembered already (the common case: every load of a known text)
        marker.parent.mkdir(parents=True, exist_ok=True)
        with os.scandir(marker.parent) as entries:
            if sum(1 for _ in entries) >= KEEP:
                for old in marker.parent.iterdir():
                    with contextlib.suppress(OSError):
                        old.unlink()
        marker.touch()
    except (OSError, ValueError):
        pass
