"""One readiness check of `vmdesk doctor`, shared by every engine's doctor.

Checks are data (the CLI renders a table or JSON), so each engine reports its host's
readiness in the same shape without importing another engine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Check:
    """One readiness check: what was found and, when not ok, what to do about it."""

    name: str
    ok: bool
    detail: str
    fix: str
    # How bad a failure of this check is (also set when ok, so JSON readers see the class):
    # "warning" means a feature degrades and VMs still run.
    severity: Severity = "error"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
