"""P23: the host memory of an idle 4 GiB guest (the tiny x86_64 one) that filled 3 GiB of
tmpfs and deleted it: how much of it QEMU gives back with the memory balloon (free page
reporting) and without it (`--no-balloon`), the two VMs in alternating order each round.
Goal: with the balloon, >= 75 % of what the guest freed returns to the host.

    .venv/bin/python -m bench.balloon_bench [--rounds N]
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import Context, Figures, Measure, Round, Status, missing, vmdesk, vmdesk_stop
from vmdesk.core import processes

GOAL = 0.75
FILL_MIB = 3072
SETTLE_S = 30.0  # the longest the host's view is watched after the guest freed its memory
WITH, WITHOUT = "returned with balloon", "returned without balloon"
VMS = {WITH: "with", WITHOUT: "without"}


def _rss(home: Path, name: str) -> int:
    pid = processes.pid_in(home / f"{name}.vmdesk/run/engine.pid")
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS")).split()[1]) << 10


def _settled(home: Path, name: str) -> int:
    """QEMU's resident bytes once they stop falling (or after SETTLE_S)."""
    deadline, last, steady = time.monotonic() + SETTLE_S, _rss(home, name), 0
    while time.monotonic() < deadline and steady < 3:
        time.sleep(1.0)
        now = _rss(home, name)
        steady = steady + 1 if abs(now - last) < (8 << 20) else 0
        last = now
    return last


def _returned(ctx: Context, home: Path, name: str) -> float:
    """Boot, fill and free FILL_MIB in the guest; the fraction of it the host got back."""
    from vmdesk.engines.qemu.process import SerialConsole
    from vmdesk.supervisor import status as vmstatus

    fill = 64 if ctx.smoke else FILL_MIB
    vmdesk(home, "start", name, "--wait-ready")
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(vmstatus.sockets_for(home / f"{name}.vmdesk").console))
        console = SerialConsole(sock, None)
        try:
            console.run(f"mkdir -p /m && mount -t tmpfs -o size={fill + 256}m tmpfs /m")
            console.run("head -c 1048576 /dev/urandom > /tmp/mib && "
                        f"for i in $(seq {fill}); do cat /tmp/mib; done > /m/f", 600)  # fmt: skip
            full = _rss(home, name)
            console.run("rm /m/f")
            after = _settled(home, name)
        finally:
            console.close()
    finally:
        vmdesk(home, "stop", name, "--force")
    return max(0.0, (full - after) / (fill << 20))


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    home = ctx.tmp / "library"
    for name in VMS.values():
        vmdesk(home, "create", name, "--image", "tiny-linux", "--arch", "x86_64",
               "--memory", "4GiB", *(() if name == "with" else ("--no-balloon",)))  # fmt: skip

    def one(round_: int) -> dict[str, float]:
        order = list(VMS.items()) if round_ % 2 == 0 else list(VMS.items())[::-1]
        return {metric: _returned(ctx, home, name) for metric, name in order}

    try:
        yield one
    finally:
        for name in VMS.values():
            vmdesk_stop(home, name)


def judge(fig: Figures) -> tuple[str, Status]:
    got, without = float(fig.metrics[WITH]["median"]), float(fig.metrics[WITHOUT]["median"])
    status: Status = "pass" if got >= GOAL else "fail"
    return f"{got:.0%} of the freed 3 GiB back (without the balloon {without:.0%})", status


MEASURE = Measure(
    key="P23",
    title="freed guest memory back to the host (balloon)",
    goal=f">= {GOAL:.0%} of what the guest freed",
    session=session,
    judge=judge,
    requires=lambda ctx: missing(programs=["qemu-system-x86_64"]),
    rounds=2,
    units={WITH: "fraction", WITHOUT: "fraction"},
    warmup=0,  # memory, not time: nothing to warm up
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
