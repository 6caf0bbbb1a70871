"""P5: live snapshot save and revert of a running 512 MiB tiny guest with 256 MiB of its RAM
dirtied (random data in tmpfs). Goal: each <= 1 s. Times are QMP job times measured by
the supervisor, with the whole `vmdesk snapshot` command beside them.

    .venv/bin/python bench/snapshot_bench.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import summarise, write_result

from vmdesk.core.bundle import Bundle
from vmdesk.engines.qemu.process import SerialConsole
from vmdesk.supervisor import client
from vmdesk.supervisor import status as vmstatus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vmdesk-bench-"))
    env = {**os.environ, "VMDESK_HOME": str(tmp), "VMDESK_ACCEL": "tcg"}
    vmdesk = str(Path(sys.executable).with_name("vmdesk"))

    def run(*argv: str) -> float:
        start = time.perf_counter()
        subprocess.run([vmdesk, *argv], check=True, env=env, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start

    timings: dict[str, list[float]] = {"save": [], "load": [], "save_cli": [], "load_cli": []}
    try:
        run("create", "snap", "--image", "tiny-linux", "--arch", "aarch64", "--memory", "512MiB")
        run("disk", "add", "snap", "--size", "4GiB")
        run("start", "snap", "--wait-ready")
        bundle = Bundle(tmp / "snap.vmdesk")
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(vmstatus.sockets_for(bundle.path).console))
        console = SerialConsole(sock, None)
        console.run("head -c 268435456 /dev/urandom > /tmp/fill", timeout=600)
        os.environ.update(env)
        for round_ in range(args.rounds):
            tag = f"vmdesk-bench{round_}"
            start = time.perf_counter()
            reply = client.call(bundle, "snapshot_save", tag=tag, timeout=600)
            timings["save_cli"].append(time.perf_counter() - start)
            timings["save"].append(float(reply["seconds"]))
            start = time.perf_counter()
            reply = client.call(bundle, "snapshot_load", tag=tag, timeout=600)
            timings["load_cli"].append(time.perf_counter() - start)
            timings["load"].append(float(reply["seconds"]))
            client.call(bundle, "snapshot_delete", tag=tag, timeout=600)
        console.close()
        run("stop", "snap", "--force")
    finally:
        subprocess.run([vmdesk, "stop", "snap", "--force"], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    save, load = summarise(timings["save"]), summarise(timings["load"])
    meets = save["median_ms"] <= 1000 and load["median_ms"] <= 1000
    path = write_result("snapshot", {"rounds": args.rounds, "guest_memory_mib": 512,
                                     "dirtied_mib": 256, "save": save, "load": load,
                                     "save_request": summarise(timings["save_cli"]),
                                     "load_request": summarise(timings["load_cli"]),
                                     "goal_ms": 1000, "meets_goal": meets})  # fmt: skip
    print(f"P5 live snapshot of a 512 MiB guest, 256 MiB dirtied, {args.rounds} rounds (median):")
    print(f"   save  {save['median_ms']:7.0f} ms")
    print(f"   load  {load['median_ms']:7.0f} ms")
    print(f"   goal <= 1000 ms each: {'meets goal' if meets else 'MISSES goal'}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
