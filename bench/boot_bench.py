"""P1: from running `vmdesk start` until the guest's READY line is in the serial log, vs
bare `qemu-system-aarch64` with the same argv (serial to a file), both watched the same way.

Goal: per-round ratio <= 1.05 (median) for a start of an unchanged VM, which replays its
saved launch plan. The first start after a change (no plan yet) is measured beside it,
and so is when QEMU's process began after `vmdesk start` was run: all that we add before
the guest runs (after that both sides run the same QEMU).

    .venv/bin/python -m bench.boot_bench [--rounds N]
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import (
    Context,
    Figures,
    Measure,
    Pair,
    Round,
    Status,
    missing,
    ms_since,
    paired,
    vmdesk,
    vmdesk_cli,
    vmdesk_env,
    vmdesk_stop,
)
from vmdesk.core import processes

READY = b"VMDESK-READY"
GOAL_RATIO = 1.05
START, FIRST, BARE = "vmdesk start", "first start after a change", "bare qemu"
SPAWN, SPAWN_FIRST = "qemu spawned after vmdesk start", "qemu spawned after a first start"


def wait_for(path: Path, needle: bytes, proc: subprocess.Popen[bytes] | None, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if needle in path.read_bytes():
                return
        except FileNotFoundError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("QEMU exited before READY")
        time.sleep(0.005)
    raise TimeoutError(f"no {needle.decode()} in {path} after {limit:.0f} s")


def _bare_argv(engine_log: Path, tmp: Path) -> list[str]:
    """The argv our supervisor ran (logged), with the inherited-fd sockets made plain."""
    line = next(ln for ln in engine_log.read_text().splitlines() if ln.startswith("+ "))
    argv = shlex.split(line[2:])  # logged with shlex.join
    out: list[str] = []
    i = 0
    while i < len(argv):
        option, value = argv[i], argv[i + 1] if i + 1 < len(argv) else ""
        if (option == "-chardev" and ("id=serial0" in value or "id=qmp0" in value)) or (
            option == "-mon" and "chardev=qmp0" in value
        ):
            i += 2
        elif option == "-serial" and value == "chardev:serial0":
            out += ["-serial", f"file:{tmp / 'bare-serial.log'}"]
            i += 2
        elif option == "-vnc":
            out += ["-vnc", f"unix:{tmp / 'bare-vnc.sock'}"]
            i += 2
        elif option == "-chardev" and ("id=qga0" in value or "id=vdagent0" in value):
            # the agents' listening sockets, inherited from our supervisor: named here
            name = value.split("id=", 1)[1].split(",", 1)[0]
            fd = value.split("fd=", 1)[1].split(",", 1)[0]
            out += ["-chardev", value.replace(f"fd={fd}", f"path={tmp / f'bare-{name}.sock'}")]
            i += 2
        else:
            out.append(option)
            i += 1
    return out


def _began_ms(pid: int, boot_clock: float) -> float:
    """When process ``pid`` began (the kernel's record, in clock ticks since boot), in ms
    after ``boot_clock`` (CLOCK_BOOTTIME seconds)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[19]) / os.sysconf("SC_CLK_TCK") - boot_clock) * 1000


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    home = ctx.tmp / "library"
    bundle = home / "bench.vmdesk"
    try:
        vmdesk(home, "create", "bench", "--image", "tiny-linux", "--arch", "aarch64")
        vmdesk(home, "start", "bench", "--wait-ready")
        vmdesk(home, "stop", "bench", "--force")
        bare = _bare_argv(bundle / "logs/engine.log", ctx.tmp)
        env = vmdesk_env(home)
        serial_log = bundle / "logs/serial.log"

        def one(round_: int) -> dict[str, float]:
            figures: dict[str, float] = {}

            def ours() -> float:
                # Both sides are timed the same way: until READY shows in QEMU's serial log.
                serial_log.unlink(missing_ok=True)
                planned = (bundle / ".launch-plan.json").exists()
                boot_clock, start = time.clock_gettime(time.CLOCK_BOOTTIME), time.perf_counter()
                cli = subprocess.Popen(
                    [vmdesk_cli(), "start", "bench"], env=env, stdout=subprocess.DEVNULL
                )
                try:
                    wait_for(serial_log, READY, None, 120)
                    took = ms_since(start)
                    pid = processes.pid_in(bundle / "run/engine.pid")
                    figures[SPAWN if planned else SPAWN_FIRST] = _began_ms(pid, boot_clock)
                    return took
                finally:
                    cli.wait()
                    vmdesk(home, "stop", "bench", "--force")

            def first() -> float:
                # The first start after the VM (or VM-Desk, or the host) changed: no plan.
                (bundle / ".launch-plan.json").unlink(missing_ok=True)
                return ours()

            def qemu() -> float:
                serial = ctx.tmp / "bare-serial.log"
                serial.unlink(missing_ok=True)
                start = time.perf_counter()
                proc = subprocess.Popen(
                    bare,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    wait_for(serial, READY, proc, 120)
                    return ms_since(start)
                finally:
                    proc.kill()
                    proc.wait()

            times = paired({START: ours, FIRST: first, BARE: qemu}, round_)
            return {**times, **figures}

        yield one
    finally:
        vmdesk_stop(home, "bench")


def judge(fig: Figures) -> tuple[str, Status]:
    ratio = fig.ratio(f"{START} / {BARE}")
    spawn = fig.metrics.get(SPAWN, {}).get("median")
    spawned = f"; QEMU spawned {spawn:.0f} ms after the command" if spawn is not None else ""
    status: Status = "pass" if ratio <= GOAL_RATIO else "fail"
    return f"paired ratio {ratio:.4f}{spawned}", status


MEASURE = Measure(
    key="P1",
    title="`vmdesk start` to guest READY vs bare QEMU, same argv (aarch64, TCG)",
    goal=f"ratio <= {GOAL_RATIO}",
    session=session,
    judge=judge,
    requires=lambda ctx: missing(programs=["qemu-system-aarch64"]),
    rounds=16,
    pairs=[
        Pair(f"{START} / {BARE}", START, BARE, GOAL_RATIO),
        Pair(f"{FIRST} / {BARE}", FIRST, BARE),
    ],
    references=[BARE],
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
