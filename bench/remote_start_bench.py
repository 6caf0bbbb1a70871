"""P19: `vmdesk start HOST:VM --wait-ready` on a libvirt host (this machine's libvirtd) until
the guest's READY line, vs `virsh start` of the same domain until READY is in its serial
log on the host. Goal: per-round ratio <= 1.05 (median).

Both sides are whole processes started the same way and boot the same domain (TCG); ours
reads READY off libvirt's console stream, the reference off the log libvirt writes.

    .venv/bin/python -m bench.remote_start_bench [--rounds N]
"""

from __future__ import annotations

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
)

GOAL_RATIO = 1.05
OURS, VIRSH = "vmdesk start --wait-ready", "virsh start, READY in the log"
NAME = "bench-p19"
URI = "qemu:///system"


def virsh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True,
                          check=False, timeout=120)  # fmt: skip


def daemon_problem() -> str | None:
    """Why no libvirtd can be had here (one is started as the tests start theirs)."""
    gone = missing(programs=("virsh", "libvirtd"))
    if gone:
        return gone
    try:
        from tests.libvirt_daemon import ensure_running

        ensure_running()
    except (AssertionError, OSError) as exc:
        return f"no libvirt daemon on {URI}: {exc}"
    return None


def remove_domain(name: str) -> None:
    virsh("destroy", name)
    virsh("undefine", name, "--nvram")
    listed = virsh("vol-list", "vmdesk").stdout.splitlines()[2:]
    for volume in [line.split()[0] for line in listed if line.strip()]:
        if volume.startswith(f"{name}-"):
            virsh("vol-delete", volume, "--pool", "vmdesk")


def _log(name: str) -> Path:
    return Path(f"/var/log/libvirt/qemu/{name}-serial.log")


def _virsh_start(log: Path) -> float:
    offset = log.stat().st_size if log.exists() else 0
    start = time.perf_counter()
    subprocess.run(["virsh", "-c", URI, "start", NAME], check=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with log.open("rb") as data:
            data.seek(offset)
            if b"VMDESK-READY" in data.read():
                return ms_since(start)
        time.sleep(0.005)
    raise TimeoutError(f"no READY in {log} after 120 s")


def _ours(home: Path) -> float:
    start = time.perf_counter()
    subprocess.run([vmdesk_cli(), "start", f"lab:{NAME}", "--wait-ready"], check=True,
                   env=vmdesk_env(home), stdout=subprocess.DEVNULL)  # fmt: skip
    return ms_since(start)


def _off() -> None:
    virsh("destroy", NAME)
    deadline = time.monotonic() + 30
    while "shut off" not in virsh("domstate", NAME).stdout and time.monotonic() < deadline:
        time.sleep(0.05)


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    home = ctx.tmp / "library"
    remove_domain(NAME)
    vmdesk(home, "host", "add", "lab", URI)
    vmdesk(home, "create", NAME, "--host", "lab", "--image", "tiny-linux", "--arch", "x86_64")
    log = _log(NAME)

    def round_(index: int) -> dict[str, float]:
        def measured(run: object) -> float:
            try:
                return run()  # type: ignore[operator, no-any-return]
            finally:
                _off()

        cases = {OURS: lambda: measured(lambda: _ours(home)),
                 VIRSH: lambda: measured(lambda: _virsh_start(log))}  # fmt: skip
        return paired(cases, index)

    try:
        yield round_
    finally:
        remove_domain(NAME)


def judge(fig: Figures) -> tuple[str, Status]:
    ratio = fig.ratio(f"{OURS} / {VIRSH}")
    status: Status = "pass" if ratio <= GOAL_RATIO else "fail"
    return (f"paired ratio {ratio:.3f}; {fig.median(OURS):.0f} vs {fig.median(VIRSH):.0f} ms "
            "median"), status  # fmt: skip


MEASURE = Measure(
    key="P19",
    title="`vmdesk start` of a VM on a libvirt host to READY vs `virsh start` (x86_64, TCG)",
    goal=f"ratio <= {GOAL_RATIO}",
    session=session,
    judge=judge,
    requires=lambda ctx: daemon_problem(),
    rounds=15,  # each round boots twice; fewer left the ratio at the noise's mercy
    pairs=[Pair(f"{OURS} / {VIRSH}", OURS, VIRSH, GOAL_RATIO)],
    references=[VIRSH],
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
