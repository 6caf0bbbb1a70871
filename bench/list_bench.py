"""P3: `vmdesk list` over a library of 100 VMs, as a whole process (goal: median <= 100 ms).

Paired with a bare `python -c pass`, so the interpreter's own start-up on this machine is
visible next to ours.

    .venv/bin/python -m bench.list_bench [--rounds N]
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from bench.common import (
    Context,
    Figures,
    Measure,
    Pair,
    Round,
    Status,
    missing,
    paired,
    timed_run,
    vmdesk_cli,
    vmdesk_env,
)

GOAL_MS = 100.0
VMS, SMOKE_VMS = 100, 10


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    from vmdesk.core import config
    from vmdesk.core.bundle import Bundle

    home = ctx.tmp / "library"
    home.mkdir()
    ctx.facts["VMs in the library"] = vms = SMOKE_VMS if ctx.smoke else VMS
    try:
        for i in range(vms):
            # Bundles made directly: the library's own checks would make this O(n^2).
            Bundle.create(home / f"vm{i:03}.vmdesk", config.from_dict({"name": f"vm{i:03}"}))
        env = vmdesk_env(home)
        cases = {
            "vmdesk list": lambda: timed_run([vmdesk_cli(), "list"], env),
            "python -c pass": lambda: timed_run([sys.executable, "-c", "pass"], env),
        }
        yield lambda round_: paired(cases, round_)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def judge(fig: Figures) -> tuple[str, Status]:
    ms = fig.median("vmdesk list")
    status: Status = "pass" if ms <= GOAL_MS else "fail"
    return f"{ms:.0f} ms median (python -c pass: {fig.median('python -c pass'):.0f} ms)", status


MEASURE = Measure(
    key="P3",
    title=f"`vmdesk list` over {VMS} VMs",
    goal=f"median <= {GOAL_MS:.0f} ms",
    session=session,
    judge=judge,
    requires=lambda ctx: missing(),
    rounds=21,
    pairs=[Pair("vmdesk list / python -c pass", "vmdesk list", "python -c pass")],
    references=["python -c pass"],
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
