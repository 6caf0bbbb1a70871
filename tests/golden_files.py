"""Golden files: compare generated text with a checked-in copy (UPDATE_GOLDEN=1 rewrites)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).parent / "golden"


def check(relative: str, got: str) -> None:
    golden = ROOT / relative
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got)
    assert got == golden.read_text(), f"regenerate with UPDATE_GOLDEN=1 if intended: {golden}"
