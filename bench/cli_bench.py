"""P10: the commands people and scripts call in a loop, each as a whole process (goal: median
<= 100 ms each, as P3 asks of `vmdesk list`).

Every command runs against a real library (a VM with a qcow2 disk, a snapshot and a CD, and
a second VM with a qcow2 disk and no snapshots, which a linked clone needs), and each run is
paired with a bare `python -c pass` next to it, in alternating order (A B, then B A), so the
interpreter's own start-up on this machine is visible beside ours. The reference figure is
the median of a round's `python -c pass` runs.

Commands that change the library restore it: `edit` toggles the VM between 1 and 2 vCPUs,
`clone --linked` makes a clone that `delete --yes` then removes (always in that order).

    .venv/bin/python -m bench.cli_bench [--rounds N]
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from itertools import count
from pathlib import Path

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
    vmdesk,
    vmdesk_cli,
    vmdesk_env,
)

GOAL_MS = 100.0
VM, TEMPLATE, CLONE = "vm0", "template", "vm0-clone"
REFERENCE = "python -c pass"
# What is timed, in the order a round runs it (reversed every other round). The two commands
# of a unit always run in this order: the clone has to exist before it is deleted.
UNITS: tuple[tuple[str, ...], ...] = (
    ("show",),
    ("status",),
    ("edit",),
    ("disk list",),
    ("snapshot list",),
    ("cd list",),
    ("clone --linked", "delete --yes"),
    ("--help",),
)
COMMANDS = [name for unit in UNITS for name in unit]


def _label(command: str) -> str:
    return f"vmdesk {command}"


def _library(home: Path, iso: Path) -> None:
    """The VMs, made through the CLI as a person would."""
    for name in (VM, TEMPLATE):
        vmdesk(home, "create", name, "--memory", "512MiB", "--cpus", "1")
        vmdesk(home, "disk", "add", name, "--size", "1GiB")
    iso.write_bytes(b"\0" * (1 << 20))  # not a real ISO: `cd list` only reads the config
    vmdesk(home, "cd", "insert", VM, str(iso))
    vmdesk(home, "snapshot", "create", VM, "base")


def _argvs() -> dict[str, Callable[[], list[str]]]:
    """Each command's argv; `edit`'s alternates so that every run changes the VM."""
    cpus = count()
    return {
        "show": lambda: ["show", VM],
        "status": lambda: ["status", VM],
        "edit": lambda: ["edit", VM, "--cpus", str(2 - next(cpus) % 2)],
        "disk list": lambda: ["disk", "list", VM],
        "snapshot list": lambda: ["snapshot", "list", VM],
        "cd list": lambda: ["cd", "list", VM],
        "clone --linked": lambda: ["clone", "--linked", TEMPLATE, CLONE],
        "delete --yes": lambda: ["delete", "--yes", CLONE],
        "--help": lambda: ["--help"],
    }


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    home = ctx.tmp / "library"
    home.mkdir()
    _library(home, ctx.tmp / "install.iso")
    ctx.facts["VMs in the library"] = (
        f"2 ({VM}: qcow2 disk, 1 snapshot, 1 CD; {TEMPLATE}: qcow2 disk)"
    )
    # Set here, every vmdesk module is compiled again at each run (~35 ms of `show`).
    dont_write = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    ctx.facts["vmdesk bytecode"] = (
        "not cached (PYTHONDONTWRITEBYTECODE)" if dont_write else "cached"
    )
    env, cli, argvs = vmdesk_env(home), vmdesk_cli(), _argvs()

    def reference() -> float:
        return timed_run([sys.executable, "-c", "pass"], env)

    def run(argv: Callable[[], list[str]]) -> float:
        return timed_run([cli, *argv()], env)

    def one(round_: int) -> dict[str, float]:
        out: dict[str, float] = {}
        passes: list[float] = []
        turn = count(round_)  # A B, B A, ... within the round too
        for unit in UNITS if round_ % 2 == 0 else UNITS[::-1]:
            for command in unit:
                cases: dict[str, Callable[[], float]] = {
                    _label(command): partial(run, argvs[command]),
                    REFERENCE: reference,
                }
                got = paired(cases, next(turn))
                out[_label(command)] = got[_label(command)]
                passes.append(got[REFERENCE])
        # In the listed order whatever order they ran in: the report's rows keep still.
        return {
            **{_label(c): out[_label(c)] for c in COMMANDS},
            REFERENCE: statistics.median(passes),
        }

    yield one


def judge(fig: Figures) -> tuple[str, Status]:
    medians = {c: fig.median(_label(c)) for c in COMMANDS}
    slow = [c for c, ms in medians.items() if ms > GOAL_MS]
    shown = ", ".join(f"{c} {ms:.0f}" for c, ms in medians.items())
    verdict = f"; over {GOAL_MS:.0f} ms: {', '.join(slow)}" if slow else ""
    line = f"{shown} ms median ({REFERENCE}: {fig.median(REFERENCE):.0f} ms){verdict}"
    return line, "fail" if slow else "pass"


MEASURE = Measure(
    key="P10",
    title="`vmdesk show`, `status`, `edit`, `disk list`, `snapshot list`, `cd list`, "
    "`clone --linked`, `delete --yes`, `--help`, each a whole process",
    goal=f"median <= {GOAL_MS:.0f} ms each",
    session=session,
    judge=judge,
    requires=lambda ctx: missing(programs=["qemu-img"]),
    rounds=11,
    pairs=[Pair(f"{_label(c)} / {REFERENCE}", _label(c), REFERENCE) for c in COMMANDS],
    references=[REFERENCE],
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
