"""`vmdesk list` over a library of 100 VMs, as a whole process (goal: median <= 100 ms).

Compared in the same run with a bare `python -c pass` so the interpreter's own start-up
cost on this machine is visible next to ours.

    .venv/bin/python bench/list_bench.py [--rounds 21] [--vms 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import alternate, summarise, timed_run, write_result

from vmdesk.core import config
from vmdesk.core.bundle import Bundle

GOAL_MS = 100.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--vms", type=int, default=100)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="vmdesk-bench-"))
    try:
        for i in range(args.vms):  # direct bundle creation: the library's checks are O(n^2)
            Bundle.create(home / f"vm{i:03}.vmdesk", config.from_dict({"name": f"vm{i:03}"}))
        env = {**os.environ, "VMDESK_HOME": str(home)}
        vmdesk = str(Path(sys.executable).with_name("vmdesk"))
        timed_run([vmdesk, "list"], env)  # warm the page cache once
        samples = alternate(
            {
                "vmdesk list": lambda: timed_run([vmdesk, "list"], env),
                "python -c pass": lambda: timed_run([sys.executable, "-c", "pass"], env),
            },
            args.rounds,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)

    ours = summarise(samples["vmdesk list"])
    bare = summarise(samples["python -c pass"])
    result = {
        "vms": args.vms,
        "goal_ms": GOAL_MS,
        "vmdesk_list": ours,
        "python_startup": bare,
        "meets_goal": ours["median_ms"] <= GOAL_MS,
    }
    path = write_result("vmdesk-list", result)
    print(f"vmdesk list over {args.vms} VMs, {args.rounds} alternating rounds")
    print(f"  {'':16} {'median':>8} {'p90':>8} {'min':>8}")
    for name, s in (("vmdesk list", ours), ("python -c pass", bare)):
        print(f"  {name:16} {s['median_ms']:>6.1f}ms {s['p90_ms']:>6.1f}ms {s['min_ms']:>6.1f}ms")
    verdict = "meets" if result["meets_goal"] else "MISSES"
    print(f"  {verdict} the goal of {GOAL_MS:.0f} ms median; written to {path}")


if __name__ == "__main__":
    main()
