"""P5: live snapshot save and revert of a running 512 MiB tiny guest with 256 MiB of its RAM
dirtied (random data in tmpfs). Goal: each <= 1 s (median). The figures are QMP job
times measured by the supervisor, with the whole request to the supervisor beside them.

    .venv/bin/python -m bench.snapshot_bench [--rounds N]
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.common import (
    Context,
    Figures,
    Measure,
    Round,
    Status,
    missing,
    ms_since,
    vmdesk,
    vmdesk_env,
    vmdesk_stop,
)

GOAL_MS = 1000.0
SAVE, LOAD, SAVE_REQUEST, LOAD_REQUEST = "save", "revert", "save request", "revert request"


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    from vmdesk.core.bundle import Bundle
    from vmdesk.engines.qemu.process import SerialConsole
    from vmdesk.supervisor import client
    from vmdesk.supervisor import status as vmstatus

    home = ctx.tmp / "library"
    saved_env = dict(os.environ)
    try:
        vmdesk(
            home,
            "create",
            "snap",
            "--image",
            "tiny-linux",
            "--arch",
            "aarch64",
            "--memory",
            "512MiB",
        )
        vmdesk(home, "disk", "add", "snap", "--size", "4GiB")
        vmdesk(home, "start", "snap", "--wait-ready")
        bundle = Bundle(home / "snap.vmdesk")
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(vmstatus.sockets_for(bundle.path).console))
        console = SerialConsole(sock, None)
        console.run("head -c 268435456 /dev/urandom > /tmp/fill", timeout=600)
        console.close()
        os.environ.update(vmdesk_env(home))  # the supervisor client finds the VM through it

        def one(round_: int) -> dict[str, float]:
            tag = f"vmdesk-bench{round_}"
            figures: dict[str, float] = {}
            start = time.perf_counter()
            reply = client.call(bundle, "snapshot_save", tag=tag, timeout=600)
            figures[SAVE_REQUEST] = ms_since(start)
            figures[SAVE] = float(reply["seconds"]) * 1000
            start = time.perf_counter()
            reply = client.call(bundle, "snapshot_load", tag=tag, timeout=600)
            figures[LOAD_REQUEST] = ms_since(start)
            figures[LOAD] = float(reply["seconds"]) * 1000
            client.call(bundle, "snapshot_delete", tag=tag, timeout=600)
            return figures

        yield one
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        vmdesk_stop(home, "snap")


def judge(fig: Figures) -> tuple[str, Status]:
    save, load = fig.median(SAVE), fig.median(LOAD)
    status: Status = "pass" if max(save, load) <= GOAL_MS else "fail"
    return f"save {save:.0f} ms, revert {load:.0f} ms", status


MEASURE = Measure(
    key="P5",
    title="live snapshot save and revert, 512 MiB guest with 256 MiB dirtied",
    goal=f"<= {GOAL_MS:.0f} ms each",
    session=session,
    judge=judge,
    requires=lambda ctx: missing(programs=["qemu-system-aarch64", "qemu-img"]),
    rounds=5,
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
