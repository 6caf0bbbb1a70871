"""P15: `vmdesk ip` and `vmdesk exec NAME -- true` as whole processes against a running
desktop guest's agent (qemu-ga, under TCG), beside `python -c pass` in the same run.

Goal: <= 150 ms median each.

    .venv/bin/python -m bench.agent_bench [--rounds N]
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from bench import desktop_guest
from bench.common import (
    Context,
    Figures,
    Measure,
    Round,
    Status,
    paired,
    timed_run,
    vmdesk_cli,
    vmdesk_env,
)

GOAL_MS = 150.0
IP, EXEC, PYTHON = "vmdesk ip", "vmdesk exec -- true", "python -c pass"


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    with desktop_guest.running(ctx) as home:
        env, cli = vmdesk_env(home), vmdesk_cli()
        cases = {
            IP: lambda: timed_run([cli, "ip", desktop_guest.NAME], env),
            EXEC: lambda: timed_run([cli, "exec", desktop_guest.NAME, "--", "true"], env),
            PYTHON: lambda: timed_run([sys.executable, "-c", "pass"]),
        }
        yield lambda round_: paired(cases, round_)


def judge(fig: Figures) -> tuple[str, Status]:
    ip, run = fig.median(IP), fig.median(EXEC)
    status: Status = "pass" if max(ip, run) <= GOAL_MS else "fail"
    return f"ip {ip:.0f} ms, exec {run:.0f} ms (python -c pass {fig.median(PYTHON):.0f} ms)", status


MEASURE = Measure(
    key="P15",
    title="`vmdesk ip` and `vmdesk exec -- true`, whole process (x86_64 desktop guest, TCG)",
    goal=f"<= {GOAL_MS:.0f} ms each",
    session=session,
    judge=judge,
    requires=desktop_guest.requires,
    rounds=16,
    references=[PYTHON],
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
