"""A library on a file system that fills up (a size-limited tmpfs this test mounts): an
operation that needs more room than is left fails with one error line that names the place
and the room needed, leaves its source as it was and nothing half-made behind; operations
that need little (a sparse disk, a snapshot, an edit) go on working."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability import campaign
from tests.reliability.library_state import (
    MIB,
    Library,
    disk,
    fill,
    problems_of_disks,
    same_data,
)

DATA = 64 * MIB
ROOM = 20 * MIB  # left free: less than any copy of src needs


def _sudo(*argv: str) -> list[str]:
    return list(argv) if os.geteuid() == 0 else ["sudo", "-n", *argv]


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Path]:
    """A 160 MiB tmpfs of its own."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(_sudo("mount", "-t", "tmpfs", "-o", "size=160m,mode=1777", "tmpfs",
                                str(mount)), capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, f"mounting a tmpfs needs root (or sudo): {done.stderr}"
    try:
        yield mount
    finally:
        subprocess.run(_sudo("umount", "-l", str(mount)), check=False)


def _ballast(place: Path, leave: int) -> None:
    """Fill ``place``'s file system until ``leave`` bytes are free."""
    free = shutil.disk_usage(place).free
    with open(place / "ballast", "wb") as out:
        out.truncate(0)
        os.posix_fallocate(out.fileno(), 0, max(free - leave, 0))


def _refused_for_room(done: subprocess.CompletedProcess[str], place: Path) -> str:
    """What is wrong with how the operation failed ("" when it failed as it should)."""
    lines = done.stderr.strip().splitlines()
    if done.returncode == 0:
        return "it succeeded"
    if "Traceback" in done.stderr or not lines or not lines[0].startswith("error:"):
        return f"no one-line error: {done.stderr[-400:]!r}"
    first = lines[0]
    if "needs" not in first or "free" not in first or str(place) not in first:
        return f"the error does not say where and how much: {first!r}"
    if not any(line.startswith("hint:") for line in lines):
        return "no hint"
    return ""


def test_a_full_disk_refuses_copies_clearly_and_changes_nothing(
    small: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    lib = Library(small / "library", small / "exports")
    (small / "exports").mkdir()
    lib.vmdesk("create", "src", "--boot", "bios", "--disk-size", "256MiB")
    fill(disk(lib.bundle("src")), 0xAA, DATA)
    lib.vmdesk("create", "base", "--boot", "bios", "--disk-size", "16MiB")
    lib.vmdesk("clone", "base", "linked", "--linked")
    outside = tmp_path / "outside"
    outside.mkdir()
    lib.vmdesk("export", "src", str(outside))  # a bundle to import, from another disk
    kept = tmp_path / "kept.qcow2"
    shutil.copy(disk(lib.bundle("src")), kept)
    _ballast(small, ROOM)
    before = lib.listed()

    needing_room = {
        "full clone": ["clone", "src", "copy"],
        "export": ["export", "src", str(lib.exports)],
        "import": ["import", str(outside / "src.vmdesk"), "--name", "imported"],
    }
    failures: list[str] = []
    for what, argv in needing_room.items():
        done = lib.vmdesk(*argv, check=False)
        place = lib.exports if what == "export" else lib.root
        if problem := _refused_for_room(done, place):
            failures.append(f"{what}: {problem}")
        if lib.listed() != before:
            failures.append(f"{what}: the library changed: {lib.listed()}")
        failures += [f"{what}: left behind {p}" for p in lib.leftovers()]
    # What needs little room still works on the nearly full disk.
    for argv in (
        ["snapshot", "create", "src", "s1"],
        ["disk", "add", "src", "--size", "1GiB"],
        ["edit", "src", "--memory", "1GiB"],
        ["export", "linked", str(lib.exports)],
    ):
        done = lib.vmdesk(*argv, check=False)
        if done.returncode != 0:
            failures.append(f"{' '.join(argv)} failed: {done.stderr.strip()[-300:]}")
    lost = not same_data(disk(lib.bundle("src")), kept) or bool(
        problems_of_disks(*lib.root.glob("*.vmdesk"))
    )
    campaign.Result(test="full disk", operation="clone, export, import on a full disk",
                    cases=len(needing_room) + 4, failures=failures, lost=int(lost),
                    seconds=time.monotonic() - started).record()  # fmt: skip
    with contextlib.suppress(OSError):
        (small / "ballast").unlink()
    assert not lost, "src's data or a disk's health was lost"
    assert not failures, "\n".join(failures)
