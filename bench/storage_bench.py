"""P4: clones, through the library API (no CLI start-up in the figures).

Linked clones of a VM with a 64 GiB qcow2 disk and of one with a 1 GiB disk, paired:
goal <= 50 ms each and size-independent (paired ratio <= 1.2). A full clone of a VM whose
64 GiB sparse raw disk holds 100 MiB, paired with `cp --sparse=always` (+ sync) of the
same file: the bytes the clone wrote (this process's write_bytes in /proc/self/io) vs
the bytes the source disk has allocated, goal <= 1.1x.

    .venv/bin/python -m bench.storage_bench [--rounds N]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import Context, Figures, Measure, Pair, Round, Status, missing, ms_since, paired

if TYPE_CHECKING:
    from vmdesk.core.library import Library

GiB, MiB = 1 << 30, 1 << 20
GOAL_MS, GOAL_SIZE_RATIO, GOAL_WRITTEN_RATIO = 50.0, 1.2, 1.1
BIG, SMALL = "linked clone, 64 GiB disk", "linked clone, 1 GiB disk"
FULL, CP = "full clone", "cp --sparse=always"
WRITTEN, ALLOCATED = "full clone bytes written", "source disk allocated"
SIZES, WRITES = "linked clone: 64 GiB / 1 GiB disk", "full clone: bytes written / allocated"


def _written() -> int:
    """Bytes this process has caused to be written to storage."""
    io = Path("/proc/self/io").read_text().splitlines()
    return int(next(ln for ln in io if ln.startswith("write_bytes")).split()[1])


def _source(library: Library, name: str, size: int, fmt: str, data_mib: int) -> Path:
    from vmdesk.core import config
    from vmdesk.storage import vm_media

    library.create(config.from_dict({"name": name, "nics": []}))
    vm_media.add(library, name, size, fmt)  # type: ignore[arg-type]
    disk = library.find(name).path / f"disks/disk0.{fmt}"
    subprocess.run(
        ["qemu-io", "-f", fmt, "-c", f"write -P 0x5a 256M {data_mib}M", str(disk)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return disk


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    from vmdesk.core import space
    from vmdesk.core.library import Library
    from vmdesk.storage import clones

    data_mib = 8 if ctx.smoke else 100
    ctx.facts["data in the disks, MiB"] = data_mib
    library = Library(ctx.tmp / "library")
    _source(library, "big", 64 * GiB, "qcow2", data_mib)
    _source(library, "small", 1 * GiB, "qcow2", data_mib)
    disk = _source(library, "src", 64 * GiB, "raw", data_mib)
    numbers = count()

    def linked(source: str) -> float:
        start = time.perf_counter()
        clones.clone(library, source, f"{source}-{next(numbers)}", linked=True)
        return ms_since(start)

    def one(round_: int) -> dict[str, float]:
        figures: dict[str, float] = {}
        written: list[float] = []

        def full() -> float:
            name = f"full-{next(numbers)}"
            before, start = _written(), time.perf_counter()
            clones.clone(library, "src", name)
            took = ms_since(start)
            written.append((_written() - before) / MiB)
            library.delete(name)
            return took

        def cp() -> float:
            target = ctx.tmp / "cp.raw"
            start = time.perf_counter()
            subprocess.run(["cp", "--sparse=always", str(disk), str(target)], check=True)
            subprocess.run(["sync", str(target)], check=True)  # the clone fsyncs too
            took = ms_since(start)
            target.unlink()
            return took

        figures.update(paired({BIG: lambda: linked("big"), SMALL: lambda: linked("small")}, round_))
        figures.update(paired({FULL: full, CP: cp}, round_))
        figures[WRITTEN], figures[ALLOCATED] = written[0], space.allocated_bytes(disk) / MiB
        return figures

    try:
        yield one
    finally:
        shutil.rmtree(ctx.tmp / "library", ignore_errors=True)


def judge(fig: Figures) -> tuple[str, Status]:
    big, small = fig.median(BIG), fig.median(SMALL)
    sizes, writes = fig.ratio(SIZES), fig.ratio(WRITES)
    ok = max(big, small) <= GOAL_MS and sizes <= GOAL_SIZE_RATIO and writes <= GOAL_WRITTEN_RATIO
    return (
        f"linked {big:.0f} ms (64 GiB) / {small:.0f} ms (1 GiB), paired ratio {sizes:.2f}; "
        f"full clone wrote {fig.median(WRITTEN):.0f} MiB for {fig.median(ALLOCATED):.0f} MiB "
        f"allocated ({writes:.2f}x)",
        "pass" if ok else "fail",
    )


MEASURE = Measure(
    key="P4",
    title="linked clone 64 GiB vs 1 GiB disk; full clone of a sparse disk",
    goal=f"linked <= {GOAL_MS:.0f} ms, size ratio <= {GOAL_SIZE_RATIO}; "
    f"full clone writes <= {GOAL_WRITTEN_RATIO}x allocated",
    session=session,
    judge=judge,
    requires=lambda ctx: missing(programs=["qemu-img", "qemu-io"]),
    rounds=11,
    units={WRITTEN: "MiB", ALLOCATED: "MiB"},
    pairs=[
        Pair(SIZES, BIG, SMALL, GOAL_SIZE_RATIO),
        Pair(f"{FULL} / {CP}", FULL, CP),
        Pair(WRITES, WRITTEN, ALLOCATED, GOAL_WRITTEN_RATIO),
    ],
    references=[CP, ALLOCATED],
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
