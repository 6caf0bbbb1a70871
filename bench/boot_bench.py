"""Boot benchmarks for the tiny aarch64 guest under TCG, each compared in the same run.

P1  from running `vmdesk start` until the guest's READY line is in the serial log, vs bare
    `qemu-system-aarch64` with the same argv (serial to a file); both watched the same way.
    TCG boots of the same guest vary by 10-20 % here, so the verdict uses the median of
    per-round ratios, and the bench also reports when QEMU was spawned (all we add).
    Goal: ratio <= 1.05 for a start of an unchanged VM (replaying its saved launch plan);
    the first start after a change (no plan yet) is reported beside it.
P2  boot to READY (then power off) with our TCG CPU default (cortex-a72) vs `-cpu max`.
    Goal: ours >= 3x faster.
P7  the supervisor's resident memory while a VM runs. Goal: <= 40 MiB.

    .venv/bin/python bench/boot_bench.py [--rounds 16]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import alternate, summarise, write_result

from vmdesk.images import tiny_linux

READY = b"VMDESK-READY"


def _vmdesk(home: Path, *args: str) -> None:
    env = {**os.environ, "VMDESK_HOME": str(home), "VMDESK_ACCEL": "tcg"}
    vmdesk = str(Path(sys.executable).with_name("vmdesk"))
    subprocess.run([vmdesk, *args], check=True, env=env, stdout=subprocess.DEVNULL)


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
        else:
            out.append(option)
            i += 1
    return out


def _wait_file(
    path: Path, needle: bytes, proc: subprocess.Popen[bytes] | None, limit: float
) -> None:
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
    raise TimeoutError("no READY")


def p1(home: Path, tmp: Path, rounds: int) -> dict[str, object]:
    _vmdesk(home, "create", "bench", "--image", "tiny-linux", "--arch", "aarch64")
    _vmdesk(home, "start", "bench", "--wait-ready")
    _vmdesk(home, "stop", "bench", "--force")
    bare = _bare_argv(home / "bench.vmdesk/logs/engine.log", tmp)

    env = {**os.environ, "VMDESK_HOME": str(home), "VMDESK_ACCEL": "tcg"}
    vmdesk = str(Path(sys.executable).with_name("vmdesk"))
    serial_log = home / "bench.vmdesk/logs/serial.log"

    spawned: dict[bool, list[float]] = {True: [], False: []}  # by "had a launch plan"

    def ours() -> float:
        # Both sides are timed the same way: until READY shows in the serial log QEMU writes.
        serial_log.unlink(missing_ok=True)
        planned = (home / "bench.vmdesk/.launch-plan.json").exists()
        boot_clock, start = time.clock_gettime(time.CLOCK_BOOTTIME), time.perf_counter()
        cli = subprocess.Popen([vmdesk, "start", "bench"], env=env, stdout=subprocess.DEVNULL)
        try:
            _wait_file(serial_log, READY, None, 120)
            took = time.perf_counter() - start
            # When QEMU's process began (the kernel's record, in clock ticks since boot):
            # our whole cost before the guest runs; after it both sides run the same QEMU.
            pid = (home / "bench.vmdesk/run/engine.pid").read_text().strip()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            began = int(fields[19]) / os.sysconf("SC_CLK_TCK")
            spawned[planned].append(began - boot_clock)
            return took
        finally:
            cli.wait()
            _vmdesk(home, "stop", "bench", "--force")

    def qemu() -> float:
        serial = tmp / "bare-serial.log"
        serial.unlink(missing_ok=True)
        start = time.perf_counter()
        proc = subprocess.Popen(bare, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            _wait_file(serial, READY, proc, 120)
            return time.perf_counter() - start
        finally:
            proc.kill()
            proc.wait()

    def ours_first() -> float:
        # The first start after the VM (or VM-Desk, or the host) changed: no launch plan.
        (home / "bench.vmdesk/.launch-plan.json").unlink(missing_ok=True)
        return ours()

    cases = {"vmdesk start": ours, "vmdesk start, first after a change": ours_first,
             "bare qemu": qemu}  # fmt: skip
    samples = alternate(cases, rounds)
    bare = samples["bare qemu"]

    def versus_bare(name: str) -> dict[str, object]:
        # Each round's runs are neighbours in time, so per-round ratios cancel slow drift.
        paired = statistics.median(a / b for a, b in zip(samples[name], bare, strict=True))
        return {**summarise(samples[name]), "paired_ratio_median": round(paired, 3)}

    repeat, first = versus_bare("vmdesk start"), versus_bare("vmdesk start, first after a change")
    b = summarise(bare)
    ratio = round(repeat["median_ms"] / b["median_ms"], 3)  # type: ignore[operator]
    first_ratio = round(first["median_ms"] / b["median_ms"], 3)  # type: ignore[operator]
    paired = float(repeat["paired_ratio_median"])  # type: ignore[arg-type]
    return {"vmdesk_start": repeat, "vmdesk_start_first": first, "bare_qemu": b,
            "ratio": ratio, "ratio_first_start": first_ratio,
            "qemu_spawned_after_ms": summarise(spawned[True]),
            "qemu_spawned_after_ms_first_start": summarise(spawned[False]),
            "goal_ratio": 1.05, "meets_goal": paired <= 1.05}  # fmt: skip


def p2(tmp: Path, rounds: int) -> dict[str, object]:
    from vmdesk.engines.qemu import argv as qemu_argv

    image = tiny_linux.build("aarch64")

    def boot(cpu: str) -> float:
        serial = tmp / f"p2-{cpu}.log"
        spec = qemu_argv.BootSpec("aarch64", "tcg", image.kernel, image.initrd,
                                  image.cmdline(halt=True), nic=True)  # fmt: skip
        argv = qemu_argv.build(spec, qemu_argv.Endpoints(qmp_fd=-1, serial_fd=-1))
        argv = argv[: argv.index("-chardev")]  # plain serial file instead of sockets
        argv[argv.index("-cpu") + 1] = cpu
        argv += ["-serial", f"file:{serial}"]
        start = time.perf_counter()
        subprocess.run(["qemu-system-aarch64", *argv], check=True, timeout=300,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        took = time.perf_counter() - start
        assert READY in serial.read_bytes()
        return took

    samples = alternate({"cortex-a72": lambda: boot("cortex-a72"), "max": lambda: boot("max")},
                        rounds)  # fmt: skip
    ours, plain = summarise(samples["cortex-a72"]), summarise(samples["max"])
    speedup = round(plain["median_ms"] / ours["median_ms"], 2)
    return {"ours_cortex_a72": ours, "plain_max": plain, "speedup": speedup, "goal_speedup": 3.0,
            "meets_goal": speedup >= 3.0}  # fmt: skip


def p7(home: Path) -> dict[str, object]:
    _vmdesk(home, "start", "bench", "--wait-ready")
    try:
        pid = int((home / "bench.vmdesk/run/supervisor.pid").read_text())
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kib = int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS")).split()[1])
    finally:
        _vmdesk(home, "stop", "bench", "--force")
    mib = round(rss_kib / 1024, 1)
    return {"supervisor_rss_mib": mib, "goal_mib": 40, "meets_goal": mib <= 40}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=16)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vmdesk-bench-"))
    home = tmp / "library"
    try:
        r1 = p1(home, tmp, args.rounds)
        r7 = p7(home)
        r2 = p2(tmp, args.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    path = write_result("boot", {"rounds": args.rounds, "p1_start_to_ready": r1,
                                 "p2_tcg_cpu_model": r2, "p7_supervisor_memory": r7})  # fmt: skip

    def verdict(result: dict[str, object]) -> str:
        return "meets goal" if result["meets_goal"] else "MISSES goal"

    def row(label: str, result: object, ratio_key: str | None = None) -> str:
        stats: dict[str, float] = result  # type: ignore[assignment]
        paired = f"   paired ratio {stats[ratio_key]}" if ratio_key else ""
        return f"   {label:26s}{stats['median_ms']:8.0f} ms{paired}"

    print(f"P1 start->READY, {args.rounds} alternating rounds (median):")
    print(row("vmdesk start", r1["vmdesk_start"], "paired_ratio_median"))
    print(row("... first after a change", r1["vmdesk_start_first"], "paired_ratio_median"))
    print(row("bare qemu, same argv", r1["bare_qemu"]))
    print(f"   ratio of medians {r1['ratio']}; paired ratio (goal <= 1.05): {verdict(r1)}")
    print(f"   ratio of medians for the first start after a change: {r1['ratio_first_start']}")
    spawn, spawn_first = r1["qemu_spawned_after_ms"], r1["qemu_spawned_after_ms_first_start"]
    print(
        f"   QEMU spawned after {spawn['median_ms']:.0f} ms "  # type: ignore[index]
        f"({spawn_first['median_ms']:.0f} ms on a first start)"
    )  # type: ignore[index]
    o2, m2 = r2["ours_cortex_a72"], r2["plain_max"]
    print("P2 aarch64 TCG boot to READY and power-off (median):")
    print(f"   -cpu cortex-a72 (ours)    {o2['median_ms']:8.0f} ms")  # type: ignore[index]
    print(f"   -cpu max                  {m2['median_ms']:8.0f} ms")  # type: ignore[index]
    print(f"   speedup {r2['speedup']}x (goal >= 3x): {verdict(r2)}")
    print(f"P7 supervisor RSS {r7['supervisor_rss_mib']} MiB (goal <= 40): {verdict(r7)}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
