"""P20: `vmdesk list` with 2 libvirt hosts holding 100 VM-Desk VMs in all, as a whole
process (goal: median <= 300 ms).

The hosts are this machine's libvirtd, once as qemu:///system and once over SSH (an sshd
on a loopback port, as the tests start it), each with 50 VMs defined. `virsh list --all`
on the first host and `python -c pass` are timed beside it, for scale.

    .venv/bin/python -m bench.remote_list_bench [--rounds N]
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from bench.common import (
    Context,
    Figures,
    Measure,
    Pair,
    Round,
    Status,
    paired,
    timed_run,
    vmdesk,
    vmdesk_cli,
    vmdesk_env,
)
from bench.remote_start_bench import URI, daemon_problem, remove_domain, virsh

GOAL_MS = 300.0
VMS, SMOKE_VMS = 100, 10  # in all, half on each host's name
LIST, VIRSH, PASS = "vmdesk list", "virsh list --all", "python -c pass"
PREFIX = "bench-p20-"


def _define(count: int) -> None:
    from vmdesk.core.config import from_dict
    from vmdesk.engines.libvirt.domain_xml import Placement, build_domain

    for i in range(count):  # nothing is booted: the kernel need not exist
        boot = {"kind": "linux", "kernel": "/nonexistent/vmlinuz"}
        config = from_dict({"name": f"{PREFIX}{i:03}", "arch": "x86_64", "boot": boot})
        xml = build_domain(config, Placement("qemu"))
        done = subprocess_define(xml)
        if done:
            raise RuntimeError(done)


def subprocess_define(xml: str) -> str | None:
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".xml") as out:
        out.write(xml)
        out.flush()
        done = subprocess.run(["virsh", "-c", URI, "define", out.name], capture_output=True,
                              text=True, check=False)  # fmt: skip
    return None if done.returncode == 0 else done.stderr


def _ours_on_the_daemon() -> list[str]:
    return [n for n in virsh("list", "--all", "--name").stdout.split() if n.startswith(PREFIX)]


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    from tests.libvirt_daemon import Sshd

    home = ctx.tmp / "library"
    per_host = (SMOKE_VMS if ctx.smoke else VMS) // 2
    ctx.facts["VM-Desk VMs on each host"] = per_host
    for name in _ours_on_the_daemon():
        remove_domain(name)
    sshd = Sshd(ctx.tmp / "sshd")
    try:
        _define(per_host)
        vmdesk(home, "host", "add", "lab", URI)
        vmdesk(home, "host", "add", "far", sshd.uri)
        env = vmdesk_env(home)
        cases = {
            LIST: lambda: timed_run([vmdesk_cli(), "list"], env),
            VIRSH: lambda: timed_run(["virsh", "-c", URI, "list", "--all"], env),
            PASS: lambda: timed_run([sys.executable, "-c", "pass"], env),
        }
        yield lambda round_: paired(cases, round_)
    finally:
        sshd.close()
        for name in _ours_on_the_daemon():
            remove_domain(name)


def judge(fig: Figures) -> tuple[str, Status]:
    ms = fig.median(LIST)
    status: Status = "pass" if ms <= GOAL_MS else "fail"
    return (f"{ms:.0f} ms median ({VIRSH} on one host: {fig.median(VIRSH):.0f} ms, "
            f"{PASS}: {fig.median(PASS):.0f} ms)"), status  # fmt: skip


MEASURE = Measure(
    key="P20",
    title=f"`vmdesk list` with 2 libvirt hosts and {VMS} VMs",
    goal=f"median <= {GOAL_MS:.0f} ms",
    session=session,
    judge=judge,
    requires=lambda ctx: daemon_problem(),
    rounds=15,
    pairs=[Pair(f"{LIST} / {VIRSH}", LIST, VIRSH)],
    references=[VIRSH, PASS],
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
