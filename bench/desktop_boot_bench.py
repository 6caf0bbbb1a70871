"""P12: from running `vmdesk start` until the desktop image's graphical session says on the
serial console that it is up (VMDESK-DESKTOP-READY), vs bare `qemu-system-x86_64` with the
argv our supervisor ran, both watched the same way (the serial log, polled).

The VM is made from the debian-desktop image (`vmdesk image build debian-desktop`, built
here on first use when this runs as root, then cached) with cloud-init's first boot done
before the rounds, so every boot measured is an ordinary one. x86_64: the faster of the
two under TCG (about 75 s a boot here).

    .venv/bin/python -m bench.desktop_boot_bench [--rounds N]
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench import desktop_guest
from bench.boot_bench import _bare_argv, wait_for
from bench.common import (
    Context,
    Figures,
    Measure,
    Pair,
    Round,
    Status,
    ms_since,
    paired,
    vmdesk,
    vmdesk_cli,
    vmdesk_env,
    vmdesk_stop,
)
from vmdesk.core.arch import Arch

GOAL_RATIO = 1.05
ARCH: Arch = desktop_guest.ARCH
START, BARE = "vmdesk start", "bare qemu"
LIMIT = 900.0  # seconds for one boot to the session: a loaded 2-core machine under TCG


def _marker() -> bytes:
    from vmdesk.images import desktop

    return desktop.DESKTOP_MARKER.encode()


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    from vmdesk.images import desktop

    home = ctx.tmp / "library"
    bundle = home / "desk.vmdesk"
    marker = _marker()
    try:
        desktop.build(ARCH)  # cached after the first time
        vmdesk(home, "create", "desk", "--image", desktop.IMAGE_NAME, "--arch", ARCH,
               "--cpus", "2", "--memory", "2GiB")  # fmt: skip
        serial_log = bundle / "logs/serial.log"
        serial_log.unlink(missing_ok=True)
        vmdesk(home, "start", "desk")  # the first boot: cloud-init's one-time work
        wait_for(serial_log, marker, None, LIMIT)
        vmdesk(home, "stop", "desk", "--timeout", "180")  # cleanly: the disk as after use
        bare = _bare_argv(bundle / "logs/engine.log", ctx.tmp)
        env = vmdesk_env(home)

        def ours() -> float:
            serial_log.unlink(missing_ok=True)
            start = time.perf_counter()
            subprocess.run([vmdesk_cli(), "start", "desk"], env=env, check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            try:
                wait_for(serial_log, marker, None, LIMIT)
                return ms_since(start)
            finally:
                vmdesk(home, "stop", "desk", "--force")

        def qemu() -> float:
            serial = ctx.tmp / "bare-serial.log"
            serial.unlink(missing_ok=True)
            start = time.perf_counter()
            proc = subprocess.Popen(bare, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
            try:
                wait_for(serial, marker, proc, LIMIT)
                return ms_since(start)
            finally:
                proc.kill()
                proc.wait()

        yield lambda round_: paired({START: ours, BARE: qemu}, round_)
    finally:
        vmdesk_stop(home, "desk")


def judge(fig: Figures) -> tuple[str, Status]:
    ratio = fig.ratio(f"{START} / {BARE}")
    took = fig.median(START) / 1000
    status: Status = "pass" if ratio <= GOAL_RATIO else "fail"
    return f"paired ratio {ratio:.4f}; the session up {took:.0f} s after `vmdesk start`", status


MEASURE = Measure(
    key="P12",
    title="`vmdesk start` to the desktop session vs bare QEMU, same argv (x86_64, TCG)",
    goal=f"ratio <= {GOAL_RATIO}",
    session=session,
    judge=judge,
    requires=desktop_guest.requires,
    rounds=4,
    warmup=1,  # each boot follows a killed one, as in every round
    pairs=[Pair(f"{START} / {BARE}", START, BARE, GOAL_RATIO)],
    references=[BARE],
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
