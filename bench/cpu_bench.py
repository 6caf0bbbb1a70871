"""P2: the tiny aarch64 guest booted to READY (then powered off) under TCG with our default
CPU model vs `-cpu max`, the same argv otherwise. Goal: ours >= 3x faster (paired).

    .venv/bin/python -m bench.cpu_bench [--rounds N]
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.boot_bench import READY
from bench.common import Context, Figures, Measure, Pair, Round, Status, missing, ms_since, paired

GOAL_SPEEDUP = 3.0
OURS, MAX = "our default CPU", "-cpu max"


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    from vmdesk.engines.qemu import boot_argv
    from vmdesk.images import tiny_linux

    image = tiny_linux.build("aarch64")
    spec = boot_argv.BootSpec(
        "aarch64", "tcg", image.kernel, image.initrd, image.cmdline(halt=True), nic=True
    )
    ours = boot_argv.build(spec, boot_argv.Endpoints(qmp_fd=-1, serial_fd=-1))
    ours = ours[: ours.index("-chardev")]  # a plain serial file instead of sockets
    ctx.facts["our TCG CPU model"] = ours[ours.index("-cpu") + 1]
    plain = list(ours)
    plain[plain.index("-cpu") + 1] = "max"

    def boot(argv: list[str]) -> float:
        serial = ctx.tmp / "serial.log"
        serial.unlink(missing_ok=True)
        start = time.perf_counter()
        subprocess.run(
            ["qemu-system-aarch64", *argv, "-serial", f"file:{serial}"],
            check=True,
            timeout=300,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        took = ms_since(start)
        if READY not in serial.read_bytes():
            raise RuntimeError(f"the guest powered off without READY ({' '.join(argv)})")
        return took

    yield lambda round_: paired({OURS: lambda: boot(ours), MAX: lambda: boot(plain)}, round_)


def judge(fig: Figures) -> tuple[str, Status]:
    speedup = 1 / fig.ratio(f"{OURS} / {MAX}")
    status: Status = "pass" if speedup >= GOAL_SPEEDUP else "fail"
    return f"{speedup:.2f}x faster (paired; {fig.median(OURS):.0f} ms per boot)", status


MEASURE = Measure(
    key="P2",
    title="tiny aarch64 boot under TCG: our default CPU vs `-cpu max`",
    goal=f">= {GOAL_SPEEDUP:g}x faster",
    session=session,
    judge=judge,
    requires=lambda ctx: missing(programs=["qemu-system-aarch64"]),
    rounds=16,
    pairs=[Pair(f"{OURS} / {MAX}", OURS, MAX, round(1 / GOAL_SPEEDUP, 3))],
    references=[MAX],
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
