"""P21: fio in the desktop guest (x86_64, TCG) on two identical 4 GiB qcow2 data disks of
one VM: one with VM-Desk's defaults (disk_io.py: io_uring, O_DIRECT, an iothread, a queue
per vCPU, discard), one set to what QEMU's `-drive file=...,if=virtio` gives (the host's
page cache, aio=threads, no iothread, no discard); and fio on a host file beside them.
Sequential read/write (1 MiB blocks) in MiB/s and 4 KiB random read/write IOPS at queue
depth 32, each disk in turn (alternating which goes first) in every round.
Goal: random I/O >= 1.5x QEMU's defaults; the ratio to the host is written down.

    .venv/bin/python -m bench.disk_io_bench [--rounds N]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import desktop_guest
from bench.common import Context, Figures, Measure, Round, Status, vmdesk

GOAL = 1.5
SIZE_MIB = 512  # the region fio works in, written whole first (unwritten clusters read free)
JOBS = {  # name -> fio rw, block size, what is reported
    "seq read": ("read", "1M", "MiB/s"),
    "seq write": ("write", "1M", "MiB/s"),
    "rand read": ("randread", "4k", "IOPS"),
    "rand write": ("randwrite", "4k", "IOPS"),
}
DISKS = {"ours": "/dev/vdb", "qemu defaults": "/dev/vdc"}
QEMU_DEFAULTS = {"cache": "writeback", "aio": "threads", "iothread": False, "discard": False}


def _fio_args(target: str, rw: str, bs: str, seconds: int, engine: str) -> list[str]:
    return ["fio", "--name=p21", f"--filename={target}", f"--rw={rw}", f"--bs={bs}",
            f"--size={SIZE_MIB}M", "--direct=1", f"--ioengine={engine}", "--iodepth=32",
            "--time_based", f"--runtime={seconds}", "--output-format=json"]  # fmt: skip


def _figure(report: str, rw: str, unit: str) -> float:
    job = json.loads(report[report.index("{") :])["jobs"][0]
    side = job["write" if "write" in rw else "read"]
    return float(side["bw"]) / 1024 if unit == "MiB/s" else float(side["iops"])


def _two_disks(home: Path) -> None:
    """Add the two data disks; the second gets QEMU's defaults in its description."""
    from vmdesk.core.library import Library
    from vmdesk.service import vms

    for _ in DISKS:
        vmdesk(home, "disk", "add", desktop_guest.NAME, "--size", "4GiB")
    library = Library(home)
    disks = vms.get(library, desktop_guest.NAME)["config"]["disks"]
    disks[2] = {**disks[2], **QEMU_DEFAULTS}
    vms.edit(library, desktop_guest.NAME, {"disks": disks})


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    seconds = 2 if ctx.smoke else 5
    host_file = ctx.tmp / "host.img"
    with host_file.open("wb") as out:  # written whole, like the guest's disks
        for _ in range(SIZE_MIB):
            out.write(os.urandom(1 << 20))
    with desktop_guest.running(ctx, _two_disks) as home:
        for target in DISKS.values():  # every block written once: reads hit real clusters
            desktop_guest.run_in(home, ["dd", f"of={target}", "if=/dev/urandom", "bs=1M",
                             f"count={SIZE_MIB}", "oflag=direct"])  # fmt: skip

        def one(round_: int) -> dict[str, float]:
            got: dict[str, float] = {}
            order = list(DISKS.items()) if round_ % 2 == 0 else list(DISKS.items())[::-1]
            for job, (rw, bs, unit) in JOBS.items():
                for side, target in order:
                    report = desktop_guest.run_in(
                        home, _fio_args(target, rw, bs, seconds, "libaio")
                    )
                    got[f"{job} {side}"] = _figure(report, rw, unit)
                done = subprocess.run(_fio_args(str(host_file), rw, bs, seconds, "io_uring"),
                                      capture_output=True, text=True, check=True)  # fmt: skip
                got[f"{job} host"] = _figure(done.stdout, rw, unit)
            for job in ("rand read", "rand write"):
                got[f"{job} gain"] = got[f"{job} ours"] / got[f"{job} qemu defaults"]
            return got

        yield one


def judge(fig: Figures) -> tuple[str, Status]:
    gains = [fig.median(f"{job} gain") for job in ("rand read", "rand write")]
    to_host = fig.median("rand read ours") / fig.median("rand read host")
    status: Status = "pass" if min(gains) >= GOAL else "fail"
    return (f"random read {gains[0]:.2f}x, write {gains[1]:.2f}x QEMU's defaults; random "
            f"read at {to_host:.1%} of the host's"), status  # fmt: skip


def requires(ctx: Context) -> str | None:
    if shutil.which("fio") is None:
        return "fio is not installed on the host (scripts/setup.sh installs it)"
    return desktop_guest.requires(ctx)


UNITS = {f"{job} {side}": unit for job, (_, _, unit) in JOBS.items()
         for side in (*DISKS, "host")}  # fmt: skip
MEASURE = Measure(
    key="P21",
    title="disk I/O in a guest: our defaults vs QEMU's",
    goal=f"random I/O >= {GOAL}x QEMU's defaults",
    session=session,
    judge=judge,
    requires=requires,
    rounds=3,
    units={**UNITS, "rand read gain": "x", "rand write gain": "x"},
    references=[m for m in UNITS if not m.endswith(" ours")],
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
