"""P7: the supervisor's resident memory while its VM runs (the tiny aarch64 guest, booted
to READY). Goal: <= 40 MiB in every round.

    .venv/bin/python -m bench.memory_bench [--rounds N]
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import Context, Figures, Measure, Round, Status, missing, vmdesk, vmdesk_stop
from vmdesk.core import processes

GOAL_MIB = 40.0
RSS = "supervisor RSS"


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    kib = int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS")).split()[1])
    return kib / 1024


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    home = ctx.tmp / "library"
    vmdesk(home, "create", "bench", "--image", "tiny-linux", "--arch", "aarch64")

    def one(round_: int) -> dict[str, float]:
        vmdesk(home, "start", "bench", "--wait-ready")
        try:
            return {RSS: rss_mib(processes.pid_in(home / "bench.vmdesk/run/supervisor.pid"))}
        finally:
            vmdesk(home, "stop", "bench", "--force")

    try:
        yield one
    finally:
        vmdesk_stop(home, "bench")


def judge(fig: Figures) -> tuple[str, Status]:
    # Memory barely varies between runs, so every round must be within the goal.
    worst = float(fig.metrics[RSS]["max"])
    status: Status = "pass" if worst <= GOAL_MIB else "fail"
    return f"{worst:.1f} MiB (largest of {fig.metrics[RSS]['n']} runs)", status


MEASURE = Measure(
    key="P7",
    title="supervisor memory per running VM",
    goal=f"<= {GOAL_MIB:.0f} MiB",
    session=session,
    judge=judge,
    requires=lambda ctx: missing(programs=["qemu-system-aarch64"]),
    rounds=5,
    units={RSS: "MiB"},
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
