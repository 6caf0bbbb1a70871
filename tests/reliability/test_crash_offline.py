"""Crash injection: `kill -9` of the CLI at seeded random moments during the operations on
stopped VMs (create, edit, disk add and grow, full and linked clone, snapshot create,
revert and delete, export, import, rename, delete). After each kill:

- `vmdesk list` answers, and the VM is as before the operation or as after it, never
  between (its description loads; its disks, snapshots and data are one or the other);
- `qemu-img check` passes on every disk, and a source the operation only reads still
  holds its data;
- no process the CLI started outlives it;
- the next operation of the same kind succeeds (the same command again when the kill came
  first, another of its kind when the operation had finished), and leaves nothing behind.

The kill comes at a moment drawn uniformly over the operation's own work (measured once,
uninterrupted, with the CLI's imports done first), so the cases spread over the copying,
the qemu-img calls and the renames rather than over Python's start-up."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reliability import campaign
from tests.reliability.library_state import (
    MIB,
    Library,
    disk,
    fill,
    holds,
    problems_of_disks,
    same_data,
    virtual_size,
)

CASES = campaign.cases(quick=3, full=50)
pytestmark = pytest.mark.timeout(60 + CASES * 30)

DATA = 64 * MIB  # written to src's disk, so copies take a while
SIZE = 256 * MIB
# The CLI, with its imports done before it says go (on the fd it is given).
DRIVER = (
    "import os, sys\n"
    "from vmdesk.cli import main as cli\n"
    "os.write(int(sys.argv[1]), b'g')\n"
    "os.close(int(sys.argv[1]))\n"
    "sys.argv = ['vmdesk', *sys.argv[2:]]\n"
    "cli.main()\n"
)

State = Callable[[Library], str]  # "before", "after", or what it is instead


@dataclass(frozen=True)
class Operation:
    name: str
    argv: tuple[str, ...]
    again: tuple[str, ...]  # another of its kind, run when the first had finished
    state: State
    reads_src: bool  # the VM's data must be untouched whatever happens
    vm: str = "src"  # the VM it works on (flat: the one without snapshots)
    settled: State | None = None  # the state once the retry is done, if stricter


def _absent_or_whole(name: str) -> State:
    def state(lib: Library) -> str:
        configs = lib.configs()
        if name not in configs:
            return "before"
        if isinstance(configs[name], str):
            return f"{name}: {configs[name]}"
        if name not in lib.listed():
            return f"{name} has a bundle but is not listed"
        missing = [d["file"] for d in configs[name]["disks"]
                   if not (lib.bundle(name) / d["file"]).exists()]  # fmt: skip
        return f"{name} lacks {missing}" if missing else "after"

    return state


def _edited(lib: Library) -> str:
    config = lib.configs()["src"]
    seen = (config["memory"], config["cpus"])
    return {("2GiB", 2): "before", ("3GiB", 1): "after"}.get(seen, f"memory, cpus = {seen}")


def _disk_added(lib: Library) -> str:
    """As the description says: a file a killed add made and did not name is a leftover
    (the next change removes it), checked after the retry, when only named files remain."""
    files = [d["file"] for d in lib.configs()["src"]["disks"]]
    on_disk = sorted(p.name for p in (lib.bundle("src") / "disks").glob("*.qcow2"))
    missing = [f for f in files if Path(f).name not in on_disk]
    if missing:
        return f"described {files}, on disk {on_disk}"
    return {1: "before", 2: "after"}.get(len(files), f"described {files}")


def _disk_added_alone(lib: Library) -> str:
    """After the retry: the files on disk are exactly those described."""
    state = _disk_added(lib)
    files = sorted(Path(d["file"]).name for d in lib.configs()["src"]["disks"])
    on_disk = sorted(p.name for p in (lib.bundle("src") / "disks").glob("*.qcow2"))
    return state if files == on_disk else f"described {files}, on disk {on_disk}"


def _grown(lib: Library) -> str:
    size = virtual_size(disk(lib.bundle("flat")))
    return {SIZE: "before", 2 * SIZE: "after"}.get(size, f"virtual size {size}")


def _snapshots(before: list[str], after: list[str]) -> State:
    def state(lib: Library) -> str:
        names = lib.snapshots("src")
        return {tuple(before): "before", tuple(after): "after"}.get(tuple(names), f"{names}")

    return state


def _reverted(lib: Library) -> str:
    image = disk(lib.bundle("src"))
    if holds(image, 0xBB, DATA):
        return "before"
    return "after" if holds(image, 0xAA, DATA) else "src's disk holds neither s0 nor s1"


def _exported(lib: Library) -> str:
    copy = lib.exports / "out" / "src.vmdesk"
    if not copy.exists():
        return "before"
    if not (copy / "config.json").exists() or not disk(copy).exists():
        return f"{copy} is there but not whole"
    return "after"


def _renamed(lib: Library) -> str:
    names = set(lib.configs())
    if "src" in names and "moved" not in names:
        return "before"
    if "moved" in names and "src" not in names and lib.configs()["moved"]["name"] == "moved":
        return "after"
    return f"bundles {sorted(names)}"


def _deleted(lib: Library) -> str:
    state = _absent_or_whole("src")(lib)
    return {"before": "after", "after": "before"}.get(state, state)


OPERATIONS = [
    Operation("create", ("create", "new", "--boot", "bios", "--disk-size", "64M"),
              ("create", "new2", "--boot", "bios"), _absent_or_whole("new"), True),
    Operation("edit", ("edit", "src", "--memory", "3GiB", "--cpus", "1"),
              ("edit", "src", "--memory", "1GiB"), _edited, True),
    Operation("disk add", ("disk", "add", "src", "--size", "64M"),
              ("disk", "add", "src", "--size", "32M"), _disk_added, True,
              settled=_disk_added_alone),
    Operation("disk grow", ("disk", "grow", "flat", "0", f"{2 * SIZE // MIB}MiB"),
              ("disk", "grow", "flat", "0", f"{3 * SIZE // MIB}MiB"), _grown, True, "flat"),
    Operation("full clone", ("clone", "src", "dst"), ("clone", "src", "dst2"),
              _absent_or_whole("dst"), True),
    Operation("linked clone", ("clone", "flat", "dst", "--linked"),
              ("clone", "flat", "dst2", "--linked"), _absent_or_whole("dst"), True, "flat"),
    Operation("snapshot create", ("snapshot", "create", "src", "s2"),
              ("snapshot", "create", "src", "s3"), _snapshots(["s0", "s1"], ["s0", "s1", "s2"]),
              True),
    Operation("snapshot revert", ("snapshot", "revert", "src", "s0"),
              ("snapshot", "revert", "src", "s1"), _reverted, False),
    Operation("snapshot delete", ("snapshot", "delete", "src", "s1"),
              ("snapshot", "delete", "src", "s0"), _snapshots(["s0", "s1"], ["s0"]), True),
    Operation("export", ("export", "src", "@exports/out"), ("export", "src", "@exports/out2"),
              _exported, True),
    Operation("import", ("import", "@exports/imp/src.vmdesk", "--name", "imp"),
              ("import", "@exports/imp/src.vmdesk", "--name", "imp2"), _absent_or_whole("imp"),
              True),
    Operation("rename", ("rename", "src", "moved"), ("rename", "spare", "spare2"), _renamed,
              False),
    Operation("delete", ("delete", "src", "--yes"), ("delete", "spare", "--yes"), _deleted,
              False),
]  # fmt: skip


def _argv(lib: Library, argv: tuple[str, ...]) -> list[str]:
    return [str(lib.exports / a[len("@exports/") :]) if a.startswith("@exports/") else a
            for a in argv]  # fmt: skip


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The library every case starts from: src (a disk with data and two snapshots: s0
    holds 0xAA, s1 and the disk now 0xBB), flat (data, no snapshots: what grows and is
    cloned linked), spare, and an exported copy of src to import."""
    work = tmp_path_factory.mktemp("crash-template")
    lib = Library(work / "library", work / "exports")
    for folder in ("imp", "out", "out2"):
        (work / "exports" / folder).mkdir(parents=True)
    lib.vmdesk("create", "src", "--boot", "bios", "--disk-size", f"{SIZE // MIB}MiB")
    fill(disk(lib.bundle("src")), 0xAA, DATA)
    lib.vmdesk("snapshot", "create", "src", "s0")
    fill(disk(lib.bundle("src")), 0xBB, DATA)
    lib.vmdesk("snapshot", "create", "src", "s1")
    lib.vmdesk("create", "flat", "--boot", "bios", "--disk-size", f"{SIZE // MIB}MiB")
    fill(disk(lib.bundle("flat")), 0xCC, DATA)
    lib.vmdesk("create", "spare", "--boot", "bios", "--disk-size", "16M")
    lib.vmdesk("export", "src", str(work / "exports" / "imp"))
    return work


def _restore(template: Path, work: Path) -> Library:
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run(["cp", "-a", "--sparse=always", str(template), str(work)], check=True)
    return Library(work / "library", work / "exports")


def _run_killed(
    lib: Library, argv: list[str], delay: float | None
) -> tuple[bool, float, list[str]]:
    """Run the CLI with ``argv``; kill it ``delay`` s after its go (None: let it finish).
    Whether it finished first, how long its work took, and what outlived it."""
    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(write), *argv], env=lib.env,
                            pass_fds=(write,), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    os.close(write)
    assert os.read(read, 1) == b"g", "the CLI did not start"
    os.close(read)
    started = time.monotonic()
    finished = False
    if delay is None:
        _, errors = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{argv}: {errors.decode()[-500:]}"
        finished = True
    else:
        time.sleep(delay)
        finished = proc.poll() is not None
        if not finished:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    took = time.monotonic() - started
    return finished, took, _strays(proc.pid)


def _strays(group: int) -> list[str]:
    """Processes of the killed CLI's group still running a moment later (then killed);
    not the dead ones waiting for init to reap them. Read from /proc: no ps needed."""
    time.sleep(0.1)
    strays = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            name = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            strays.append(f"{stat.parent.name} {name.strip()}")
    if strays:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    return strays


def _check(lib: Library, op: Operation, template: Path) -> tuple[str, list[str], bool]:
    """The state after a kill, the rules it broke, and whether it cost data."""
    broken: list[str] = []
    try:
        lib.listed()
    except AssertionError as exc:
        broken.append(f"the library does not list: {exc}")
    try:
        state = op.state(lib)
    except AssertionError as exc:
        state = f"unreadable: {exc}"
    if state not in ("before", "after"):
        broken.append(f"between: {state}")
    bundles = [*lib.root.glob("*.vmdesk"), *lib.exports.glob("*/*.vmdesk")]
    damaged = problems_of_disks(*bundles)
    broken += damaged
    lost = bool(damaged)
    vm, kept = lib.bundle(op.vm), template / "library" / f"{op.vm}.vmdesk"
    if op.reads_src and vm.exists() and not same_data(disk(vm), disk(kept)):
        broken.append(f"{op.vm}'s data changed")
        lost = True
    return state, broken, lost


def _case(
    lib: Library, op: Operation, delay: float, template: Path
) -> tuple[bool, list[str], bool]:
    finished, _, strays = _run_killed(lib, _argv(lib, op.argv), delay)
    state, broken, lost = _check(lib, op, template)
    broken += [f"outlived the CLI: {s}" for s in strays]
    retry = op.argv if state == "before" else op.again
    done = lib.vmdesk(*_argv(lib, retry), check=False)
    if done.returncode != 0:
        broken.append(f"the next {op.name} failed: {done.stderr.strip()[-300:]}")
    elif retry == op.argv and (after := (op.settled or op.state)(lib)) != "after":
        broken.append(f"the retried {op.name} left: {after}")
    broken += [f"left behind: {p}" for p in lib.leftovers()]
    broken += problems_of_disks(*lib.root.glob("*.vmdesk"))
    return finished, broken, lost


@pytest.mark.parametrize("op", OPERATIONS, ids=[op.name for op in OPERATIONS])
def test_a_cli_killed_at_any_moment_leaves_the_vm_before_or_after(
    op: Operation, template: Path, tmp_path: Path
) -> None:
    rng = random.Random(f"{campaign.SEED}:{op.name}")
    work = tmp_path / "work"
    result = campaign.Result(test="crash: kill -9 of the CLI", operation=op.name, completed=0)
    started = time.monotonic()
    lib = _restore(template, work)
    _, work_time, strays = _run_killed(lib, _argv(lib, op.argv), None)
    assert not strays and op.state(lib) == "after", f"{op.name} does not work uninterrupted"
    for case in range(CASES):
        delay = rng.uniform(0, work_time * 1.2)
        lib = _restore(template, work)
        finished, broken, lost = _case(lib, op, delay, template)
        result.cases += 1
        result.completed = (result.completed or 0) + finished
        result.lost += lost
        result.failures += [f"case {case} (kill at {delay * 1000:.0f} ms): {b}" for b in broken]
    result.seconds = time.monotonic() - started
    result.record()
    assert not result.failures, "\n".join(result.failures[:40])
