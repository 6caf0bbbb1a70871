"""P6: guest file throughput on a VirtioFS share vs a 9p share of the same host folder.

One tiny guest mounts one host folder twice, over VirtioFS (virtiofsd with VM-Desk's
settings) and over 9p (msize 512 KiB), and runs each workload on both, alternating the
order each round: a 64 MiB file written and read back, and 300 small files created and
read. The guest drops its page cache before each read, so reads come from the host. Times
are taken inside the guest (10 ms resolution). Goal: the default mode (VirtioFS) within
10% of the better mode on each workload, or the trade-off documented so the user can
pick per share.

    .venv/bin/python -m bench.share_bench [--rounds N]
"""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import (
    Context,
    Figures,
    Measure,
    Pair,
    Round,
    Status,
    missing,
    vmdesk,
    vmdesk_stop,
)

if TYPE_CHECKING:
    from vmdesk.engines.qemu.process import SerialConsole

ARCH = "x86_64"
BIG_MIB = 64
SMALL_FILES = 300
GOAL_RATIO = 1.10
DEFAULT, OTHER = "virtiofs", "9p"
MOUNTS = {
    "virtiofs": "mount -t virtiofs viafs /mnt/virtiofs",
    "9p": "mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 via9p /mnt/9p",
}
# Each workload prints its seconds (from /proc/uptime around it, 10 ms resolution).
_TIMED = (
    "s=$(cut -d' ' -f1 /proc/uptime); {work}; e=$(cut -d' ' -f1 /proc/uptime); "
    'echo "secs=$(echo "$e $s" | awk \'{{print $1-$2}}\')"'
)
WORKLOADS = {
    f"write {BIG_MIB} MiB": f"dd if=/dev/zero of={{dir}}/big bs=1M count={BIG_MIB} 2>/dev/null "
    "&& sync",
    f"read {BIG_MIB} MiB": "dd if={dir}/big of=/dev/null bs=1M 2>/dev/null",
    f"create {SMALL_FILES} files": f"mkdir {{dir}}/s && for i in $(seq {SMALL_FILES}); do "
    "echo $i > {dir}/s/$i; done && sync",
    f"read {SMALL_FILES} files": "cat {dir}/s/* > /dev/null",
}
_RESET = "rm -rf {dir}/big {dir}/s; sync"
_DROP = "sync; echo 3 > /proc/sys/vm/drop_caches"
README = Path(__file__).resolve().parent.parent / "README.md"


def metric(workload: str, mode: str) -> str:
    return f"{workload} ({mode})"


def pair_label(workload: str) -> str:
    return f"{workload}: {DEFAULT} / {OTHER}"


def _timed(console: SerialConsole, command: str) -> float:
    out = console.run(_TIMED.format(work=command), timeout=600)
    return float(out.rsplit("secs=", 1)[1].split()[0]) * 1000


def _requires(ctx: Context) -> str | None:
    reason = missing(programs=[f"qemu-system-{ARCH}"])
    if reason is not None:
        return reason
    from vmdesk.engines.qemu.doctor import find_virtiofsd

    return None if find_virtiofsd() else "virtiofsd is not installed"


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    from vmdesk.engines.qemu.process import SerialConsole
    from vmdesk.supervisor import status as vmstatus

    home = ctx.tmp / "library"
    folder = ctx.tmp / "shared"
    for mode in MOUNTS:
        (folder / mode).mkdir(parents=True)
    try:
        vmdesk(
            home,
            "create",
            "share",
            "--image",
            "tiny-linux",
            "--arch",
            ARCH,
            "--memory",
            "1GiB",
            "--nic",
            "none",
            "--share",
            f"{folder}:viafs:virtiofs",
            "--share",
            f"{folder}:via9p:9p",
        )
        vmdesk(home, "start", "share", "--wait-ready")
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(vmstatus.sockets_for(home / "share.vmdesk").console))
        console = SerialConsole(sock, None)
        for mode, mount in MOUNTS.items():
            console.run(f"mkdir -p /mnt/{mode} && {mount}")

        def one(round_: int) -> dict[str, float]:
            figures: dict[str, float] = {}
            for mode in list(MOUNTS) if round_ % 2 == 0 else list(reversed(MOUNTS)):
                # each mode works in its own subfolder, so the other mount's caches never help
                directory = f"/mnt/{mode}/{mode}"
                console.run(_RESET.format(dir=directory), timeout=600)
                for workload, command in WORKLOADS.items():
                    if workload.startswith("read"):
                        console.run(_DROP)
                    figures[metric(workload, mode)] = _timed(console, command.format(dir=directory))
            return figures

        try:
            yield one
        finally:
            console.close()
    finally:
        vmdesk_stop(home, "share")
        shutil.rmtree(folder, ignore_errors=True)


def judge(fig: Figures) -> tuple[str, Status]:
    ratios = {workload: fig.ratio(pair_label(workload)) for workload in WORKLOADS}
    text = f"{DEFAULT} / {OTHER}: " + ", ".join(f"{w} {r:.2f}" for w, r in ratios.items())
    if all(r <= GOAL_RATIO for r in ratios.values()):
        return text, "pass"
    # Neither mode wins everywhere: the goal allows that if the user is told which to pick.
    if README.exists() and "share_bench" in README.read_text():
        return f"{text}; the trade-off is in README.md (Shared folders)", "documented"
    return text, "fail"


MEASURE = Measure(
    key="P6",
    title=f"VirtioFS vs 9p guest file throughput ({ARCH} guest, TCG)",
    goal=f"default within {GOAL_RATIO - 1:.0%} of the better, or trade-off documented",
    session=session,
    judge=judge,
    requires=_requires,
    rounds=3,
    pairs=[
        Pair(pair_label(w), metric(w, DEFAULT), metric(w, OTHER), GOAL_RATIO) for w in WORKLOADS
    ],
    references=[metric(w, OTHER) for w in WORKLOADS],
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
