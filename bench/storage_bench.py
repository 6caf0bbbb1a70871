"""Clone benchmarks (issue goals), each compared in the same run.

S1  a linked clone of a VM with a 64 GiB qcow2 disk, through the library API (no CLI
    start-up): goal <= 50 ms, and about the same for a 2 GiB disk (size-independent).
S2  a full clone of a VM whose 64 GiB sparse raw disk holds 100 MiB of data: bytes
    written ~= 100 MiB, and the time next to `cp --sparse=always` of the same file.

    .venv/bin/python bench/storage_bench.py [--rounds 11]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import alternate, summarise, write_result

from vmdesk.core import config as vmconfig
from vmdesk.core.library import Library
from vmdesk.storage import clones, copying, vm_media

GiB, MiB = 1 << 30, 1 << 20


def _source(library: Library, name: str, size: int, fmt: str) -> Path:
    library.create(vmconfig.from_dict({"name": name, "nics": []}))
    vm_media.add(library, name, size, fmt)  # type: ignore[arg-type]
    disk = library.find(name).path / f"disks/disk0.{fmt}"
    subprocess.run(["qemu-io", "-f", fmt, "-c", "write -P 0x5a 1G 100M", str(disk)],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return disk


def s1(tmp: Path, rounds: int) -> dict[str, object]:
    library = Library(tmp / "s1")
    _source(library, "big", 64 * GiB, "qcow2")
    _source(library, "small", 2 * GiB, "qcow2")
    counter = iter(range(10**6))

    def linked(source: str) -> float:
        start = time.perf_counter()
        clones.clone(library, source, f"{source}-{next(counter)}", linked=True)
        return time.perf_counter() - start

    samples = alternate({"64GiB": lambda: linked("big"), "2GiB": lambda: linked("small")},
                        rounds)  # fmt: skip
    big, small = summarise(samples["64GiB"]), summarise(samples["2GiB"])
    return {"linked_clone_64gib": big, "linked_clone_2gib": small, "goal_ms": 50,
            "size_ratio": round(big["median_ms"] / small["median_ms"], 2),
            "meets_goal": big["median_ms"] <= 50}  # fmt: skip


def s2(tmp: Path, rounds: int) -> dict[str, object]:
    library = Library(tmp / "s2")
    disk = _source(library, "src", 64 * GiB, "raw")
    counter = iter(range(10**6))
    written: list[int] = []

    def ours() -> float:
        name = f"full-{next(counter)}"
        start = time.perf_counter()
        made = clones.clone(library, "src", name)
        took = time.perf_counter() - start
        written.append(copying.allocated(made.path / "disks/disk0.raw"))
        library.delete(name)
        return took

    def cp() -> float:
        target = tmp / "cp.raw"
        start = time.perf_counter()
        subprocess.run(["cp", "--sparse=always", str(disk), str(target)], check=True)
        subprocess.run(["sync", str(target)], check=True)  # ours fsyncs too
        took = time.perf_counter() - start
        target.unlink()
        return took

    samples = alternate({"vmdesk clone": ours, "cp --sparse=always": cp}, rounds)
    a, b = summarise(samples["vmdesk clone"]), summarise(samples["cp --sparse=always"])
    mib = round(max(written) / MiB, 1)
    return {"full_clone": a, "cp_sparse": b, "ratio": round(a["median_ms"] / b["median_ms"], 2),
            "data_mib": 100, "written_mib": mib, "meets_goal": mib <= 110}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vmdesk-bench-"))
    try:
        r1, r2 = s1(tmp, args.rounds), s2(tmp, args.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    path = write_result("storage", {"rounds": args.rounds, "s1_linked_clone": r1,
                                    "s2_full_clone": r2})  # fmt: skip

    def verdict(result: dict[str, object]) -> str:
        return "meets goal" if result["meets_goal"] else "MISSES goal"

    def ms(result: object, key: str) -> float:
        return float(result[key]["median_ms"])  # type: ignore[index]

    print(f"S1 linked clone, {args.rounds} alternating rounds (median):")
    print(f"   64 GiB disk  {ms(r1, 'linked_clone_64gib'):7.1f} ms (goal <= 50 ms): {verdict(r1)}")
    print(f"   2 GiB disk   {ms(r1, 'linked_clone_2gib'):7.1f} ms (size ratio {r1['size_ratio']})")
    print("S2 full clone of a 64 GiB sparse disk holding 100 MiB (median):")
    print(f"   vmdesk clone          {ms(r2, 'full_clone'):8.1f} ms, wrote {r2['written_mib']} MiB")
    print(f"   cp --sparse=always    {ms(r2, 'cp_sparse'):8.1f} ms  (ratio {r2['ratio']})")
    print(f"   bytes written ~= data: {verdict(r2)}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
