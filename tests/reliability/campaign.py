"""The reliability campaign's size and its record.

``make test`` runs a quick seeded subset; ``make reliability`` runs the full campaign
(``VMDESK_CAMPAIGN=full``) and writes each test's figures to ``VMDESK_CAMPAIGN_RESULTS``
(JSON lines), from which :mod:`tests.reliability.report` writes RELIABILITY.md. The seed
(``VMDESK_CAMPAIGN_SEED``, default 20261201) makes every case reproducible."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

FULL = os.environ.get("VMDESK_CAMPAIGN", "quick") == "full"
SEED = int(os.environ.get("VMDESK_CAMPAIGN_SEED", "20261201"))
# Resolved now: a test may change its working directory before it records.
_TARGET = os.environ.get("VMDESK_CAMPAIGN_RESULTS")
RESULTS = Path(_TARGET).absolute() if _TARGET else None


def cases(quick: int, full: int) -> int:
    return full if FULL else quick


@dataclass
class Result:
    """One campaign test's figures: ``lost`` counts cases that cost a VM, a disk or a
    setting (the goal: 0); ``failures`` names every case that broke a rule, by its seed."""

    test: str
    operation: str
    cases: int = 0
    completed: int | None = None  # crash cases whose process finished before the kill
    failures: list[str] = field(default_factory=list)
    lost: int = 0
    seconds: float = 0.0
    seed: int = SEED
    campaign: str = "full" if FULL else "quick"

    def record(self) -> None:
        if RESULTS is None:
            return
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as out:
            out.write(json.dumps({**asdict(self), "at": time.time()}) + "\n")
