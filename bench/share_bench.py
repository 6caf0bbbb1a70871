"""P6: guest file throughput on a VirtioFS share vs a 9p share of the same host folder.

One tiny guest mounts one host folder twice, over VirtioFS (virtiofsd with VM-Desk's
settings) and over 9p (msize 512 KiB), and runs each workload on both, alternating the
order each round: a 64 MiB file written and read back, and 300 small files created and
read. The guest drops its page cache before each read, so reads come from the host. Times
are taken inside the guest. Goal: the default mode within 10% of the better mode on each
workload, or the trade-off documented so the user can pick per share.

    .venv/bin/python bench/share_bench.py [--rounds 3] [--arch x86_64]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import summarise, write_result

from vmdesk.engines.qemu.process import SerialConsole
from vmdesk.supervisor import status as vmstatus

BIG_MIB = 64
SMALL_FILES = 300
MOUNTS = {
    "virtiofs": "mount -t virtiofs viafs /mnt/virtiofs",
    "9p": "mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 via9p /mnt/9p",
}
# Each workload prints its seconds (from /proc/uptime around it, 10 ms resolution).
_TIMED = "s=$(cut -d' ' -f1 /proc/uptime); {work}; e=$(cut -d' ' -f1 /proc/uptime); " \
    "echo \"secs=$(echo \"$e $s\" | awk '{{print $1-$2}}')\""  # fmt: skip
WORKLOADS = {
    "big_write": f"dd if=/dev/zero of={{dir}}/big bs=1M count={BIG_MIB} 2>/dev/null && sync",
    "big_read": "dd if={dir}/big of=/dev/null bs=1M 2>/dev/null",
    "small_create": f"mkdir {{dir}}/s && for i in $(seq {SMALL_FILES}); do echo $i > {{dir}}/s/$i; "
    "done && sync",
    "small_read": "cat {dir}/s/* > /dev/null",
}
_RESET = "rm -rf {dir}/big {dir}/s; sync"
_DROP = "sync; echo 3 > /proc/sys/vm/drop_caches"


def _timed(console: SerialConsole, command: str) -> float:
    out = console.run(_TIMED.format(work=command), timeout=600)
    return float(out.rsplit("secs=", 1)[1].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--arch", default="x86_64")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vmdesk-bench-"))
    env = {**os.environ, "VMDESK_HOME": str(tmp / "lib"), "VMDESK_ACCEL": "tcg"}
    vmdesk = str(Path(sys.executable).with_name("vmdesk"))
    folder = tmp / "shared"
    (folder / "virtiofs").mkdir(parents=True)
    (folder / "9p").mkdir()
    samples: dict[str, dict[str, list[float]]] = {w: {m: [] for m in MOUNTS} for w in WORKLOADS}
    try:
        subprocess.run(
            [vmdesk, "create", "share", "--image", "tiny-linux", "--arch", args.arch,
             "--memory", "1GiB", "--nic", "none",
             "--share", f"{folder}:viafs:virtiofs", "--share", f"{folder}:via9p:9p"],
            check=True, env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        subprocess.run([vmdesk, "start", "share", "--wait-ready"], check=True, env=env,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(vmstatus.sockets_for(tmp / "lib" / "share.vmdesk").console))
        console = SerialConsole(sock, None)
        for mode, mount in MOUNTS.items():
            console.run(f"mkdir -p /mnt/{mode} && {mount}")
        for round_ in range(args.rounds):
            order = list(MOUNTS) if round_ % 2 == 0 else list(reversed(MOUNTS))
            for mode in order:
                # each mode works in its own subfolder, so the other mount's caches never help
                directory = f"/mnt/{mode}/{mode}"
                console.run(_RESET.format(dir=directory), timeout=600)
                for workload, command in WORKLOADS.items():
                    if workload.endswith("read"):
                        console.run(_DROP)
                    seconds = _timed(console, command.format(dir=directory))
                    samples[workload][mode].append(seconds)
        console.close()
        subprocess.run([vmdesk, "stop", "share", "--force"], env=env, capture_output=True)
    finally:
        subprocess.run([vmdesk, "stop", "share", "--force"], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    report(samples, args)


def report(samples: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    result: dict[str, object] = {"rounds": args.rounds, "arch": args.arch, "big_mib": BIG_MIB,
                                 "small_files": SMALL_FILES, "default": "virtiofs"}  # fmt: skip
    print(
        f"P6 shared folder throughput, {args.arch} guest under TCG, {args.rounds} rounds (median)"
    )
    print(f"   {'workload':14} {'virtiofs':>12} {'9p':>12}   default vs best")
    within = True
    for workload, by_mode in samples.items():
        stats = {mode: summarise(values) for mode, values in by_mode.items()}
        best = min(s["median_ms"] for s in stats.values())
        ratio = stats["virtiofs"]["median_ms"] / best if best else 1.0
        within = within and ratio <= 1.10
        result[workload] = {**stats, "default_vs_best": round(ratio, 2)}
        cells = []
        for mode in MOUNTS:
            ms = stats[mode]["median_ms"]
            if workload.startswith("big") and ms:
                cells.append(f"{BIG_MIB / (ms / 1000):8.0f} MB/s")
            else:
                cells.append(f"{ms / 1000:10.2f} s")
        print(f"   {workload:14} {cells[0]:>12} {cells[1]:>12}   {ratio:.2f}x")
    result["default_within_10pct_everywhere"] = within
    path = write_result("share", result)
    verdict = "yes" if within else "no: pick per share (README, 'Shared folders')"
    print(f"   default (virtiofs) within 10% of the best on every workload: {verdict}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
