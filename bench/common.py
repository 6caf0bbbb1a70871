"""What every benchmark shares: the shape of a measure, paired rounds, and summaries.

These machines are noisy (two runs of the same thing differ by 10-20 %), so a measure
runs what it compares in the same round, alternating the order every round (A B, B A,
...), and comparisons are judged on the ratio taken round by round, not on the ratio of
two medians taken minutes apart.

A measure module supplies a `Measure`: a session (set up once, yields a function that
runs one round and returns that round's figures, cleans up after) and a judge (turns the
summaries into a result line and a status). The runner does the rest: prerequisites,
warm-up, repetitions, summaries, the JSON file and the report.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["pass", "fail", "documented", "skipped", "error"]
Round = Callable[[int], dict[str, float]]  # round index -> metric name -> value
Summary = dict[str, Any]  # median, p90, min, max, n (and unit)


@dataclass(frozen=True)
class Context:
    """What a session gets: its own scratch directory and the run's options."""

    tmp: Path
    smoke: bool  # one quick round with small sizes: checks the plumbing, not speed
    web_url: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # what a session learns (sizes, ...)


@dataclass(frozen=True)
class Pair:
    """A comparison judged per round: ours / reference (lower is better for us)."""

    label: str
    ours: str
    reference: str
    goal_max: float | None = None  # the paired median must not exceed this


@dataclass(frozen=True)
class Figures:
    """A measure's summaries, handed to its judge."""

    metrics: dict[str, Summary]
    ratios: dict[str, Summary]

    def median(self, metric: str) -> float:
        return float(self.metrics[metric]["median"])

    def ratio(self, label: str) -> float:
        return float(self.ratios[label]["median"])


@dataclass(frozen=True)
class Measure:
    key: str  # "P1".."P10": the issues name the goals this way
    title: str
    goal: str
    session: Callable[[Context], AbstractContextManager[Round]]
    judge: Callable[[Figures], tuple[str, Status]]
    requires: Callable[[Context], str | None]  # why it cannot run here, or None
    rounds: int
    units: Mapping[str, str] = field(default_factory=dict)  # metric -> unit (default ms)
    pairs: Sequence[Pair] = ()
    references: Sequence[str] = ()  # metrics that are baselines, not ours
    warmup: int = 1

    def unit(self, metric: str) -> str:
        return self.units.get(metric, "ms")


def paired(cases: Mapping[str, Callable[[], float]], round_: int) -> dict[str, float]:
    """Run every case once, in reverse order on odd rounds, so that neither side always
    runs first (warm caches, a neighbour's burst of work)."""
    names = list(cases)
    order = names if round_ % 2 == 0 else names[::-1]
    return {name: cases[name]() for name in order}


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def timed_run(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Milliseconds of one whole process run (which must succeed)."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return ms_since(start)


def summarise(values: Sequence[float]) -> Summary:
    """Full precision: goals are judged on these (a ratio of 1.0502 misses 1.05); the
    runner rounds them only when it writes them out."""
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "p90": ordered[int(0.9 * (len(ordered) - 1))],
        "min": ordered[0],
        "max": ordered[-1],
        "n": len(ordered),
    }


def rounded(value: Any, digits: int = 4) -> Any:
    """``value`` with every float in it cut to ``digits`` significant digits, for output."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def vmdesk_cli() -> str:
    """The `vmdesk` installed next to this Python (the venv's)."""
    return str(Path(sys.executable).with_name("vmdesk"))


def vmdesk_env(home: Path) -> dict[str, str]:
    # Every guest runs under TCG so that results compare across hosts with and without KVM.
    return {**os.environ, "VMDESK_HOME": str(home), "VMDESK_ACCEL": "tcg"}


def vmdesk(home: Path, *args: str) -> None:
    subprocess.run(
        [vmdesk_cli(), *args], check=True, env=vmdesk_env(home), stdout=subprocess.DEVNULL
    )


def missing(*, vmdesk: bool = True, programs: Sequence[str] = ()) -> str | None:
    """The first missing prerequisite, said so a person can fix it, or None."""
    if vmdesk and importlib.util.find_spec("vmdesk") is None:
        return "the vmdesk package is not installed in this Python (make setup)"
    if vmdesk and not Path(vmdesk_cli()).exists():
        return f"no vmdesk command next to {sys.executable} (make setup)"
    for program in programs:
        if shutil.which(program) is None:
            return f"{program} is not installed"
    return None


def vmdesk_stop(home: Path, name: str) -> None:
    """Force a VM off, quietly: used on the way out, where it may not be running."""
    subprocess.run(
        [vmdesk_cli(), "stop", name, "--force"], env=vmdesk_env(home), capture_output=True
    )
