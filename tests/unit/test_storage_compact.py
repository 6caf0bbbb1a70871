"""`vmdesk disk compact`: a stopped VM's disks give back their zeroed blocks, with the real
qemu-img, qemu-io and fallocate (no guest is booted)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.unit.test_cli_vm import Run
from tests.unit.test_storage import clean, holds, make_vm, qemu_io, write
from vmdesk.core.errors import Conflict, NotFound, StorageError
from vmdesk.core.library import Library
from vmdesk.service import storage
from vmdesk.storage import clones, images, qemu_img, snapshots, vm_media
from vmdesk.storage.compact import SCRATCH

GiB = 1 << 30
MiB = 1 << 20


@pytest.fixture
def library(tmp_path: Path) -> Library:
    return Library(tmp_path / "lib")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def identical(first: Path, second: Path, fmt: str = "qcow2") -> bool:
    return qemu_img.compare(first, second, fmt) == ""


def scratch_files(bundle: Path) -> list[Path]:
    return list((bundle / "disks").glob(f".*{SCRATCH}"))


def zeroed_disk(library: Library, name: str = "vm") -> Path:
    """A VM whose qcow2 disk holds 64 MiB of 0xab, 48 MiB of it zeroed again: 32 MiB as
    zero clusters that keep their space (qemu-io's write -z) and 16 MiB of written zeros."""
    bundle = make_vm(library, name)
    vm_media.add(library, name, GiB)
    disk = bundle / "disks/disk0.qcow2"
    write(disk, 0xAB, size="64M")
    qemu_io(disk, "write -z 0 32M")
    write(disk, 0x00, offset=32 * MiB, size="16M")
    assert allocated(disk) > 64 * MiB  # still holds all of it on the host
    return disk


# -- what it does ---------------------------------------------------------------------------


def test_a_qcow2_disk_gives_back_its_zeroed_clusters(library: Library) -> None:
    disk = zeroed_disk(library)
    qemu_img.run(["bitmap", "--add", str(disk), "backup"], what="adding a bitmap")
    before = allocated(disk)
    original = disk.with_name("original.qcow2")
    shutil.copyfile(disk, original)
    report = storage.disk_compact(library, "vm")
    (done,) = report.disks
    assert (done.file, done.format, done.method) == ("disks/disk0.qcow2", "qcow2", "rewritten")
    assert done.before == before and done.after == allocated(disk)
    assert done.before - done.after >= 48 * MiB  # at least the zeroed part
    assert report.reclaimed == done.reclaimed == done.before - done.after
    assert identical(original, disk)
    clean(disk)
    assert holds(disk, 0x00, size="48M") and holds(disk, 0xAB, offset=48 * MiB, size="16M")
    facts = qemu_img.info(disk)
    assert facts["cluster-size"] == 64 * 1024 and facts["virtual-size"] == GiB
    assert [b["name"] for b in facts["format-specific"]["data"]["bitmaps"]] == ["backup"]
    assert scratch_files(library.find("vm").path) == []
    print(f"qcow2: {done.before} -> {done.after} bytes on the host")
    kept = digest(disk)
    again = storage.disk_compact(library, "vm", "0").disks[0]
    assert again.method == "unchanged" and again.reclaimed == 0  # too little to gain: dropped
    assert digest(disk) == kept


def test_the_cluster_size_and_qcow2_options_are_kept(library: Library) -> None:
    bundle = make_vm(library, "vm")
    disk = bundle / "disks/data.qcow2"
    qemu_img.run(
        ["create", "-q", "-f", "qcow2", "-o", "cluster_size=128k,lazy_refcounts=on,compat=1.1",
         str(disk), "1G"], what="creating",
    )  # fmt: skip
    vm_media.attach(library, "vm", disk)
    write(disk, 0x5A, size="32M")
    write(disk, 0x00, size="24M")
    storage.disk_compact(library, "vm", "data.qcow2")
    data = qemu_img.info(disk)
    assert data["cluster-size"] == 128 * 1024
    assert data["format-specific"]["data"]["lazy-refcounts"] is True
    assert allocated(disk) < 9 * MiB and holds(disk, 0x5A, offset=24 * MiB, size="8M")


def test_a_linked_clone_stays_an_overlay_on_the_same_base(library: Library) -> None:
    src = make_vm(library, "src")
    vm_media.add(library, "src", GiB)
    write(src / "disks/disk0.qcow2", 0x11, size="32M")
    dst = clones.clone(library, "src", "dst", linked=True).path
    disk = dst / "disks/disk0.qcow2"
    before_info = qemu_img.info(disk)
    base = Path(before_info["full-backing-filename"])
    base_digest = digest(base)
    write(disk, 0xCD, size="64M")
    qemu_io(disk, "write -z 0 48M")  # zeros over the base's data: must stay zeros
    original = disk.with_name("original.qcow2")
    shutil.copyfile(disk, original)
    done = storage.disk_compact(library, "dst").disks[0]
    assert done.method == "rewritten" and done.before - done.after >= 48 * MiB
    after_info = qemu_img.info(disk)
    for key in ("backing-filename", "backing-filename-format", "full-backing-filename"):
        assert after_info[key] == before_info[key]
    assert identical(original, disk)
    assert holds(disk, 0x00, size="48M") and holds(disk, 0xCD, offset=48 * MiB, size="16M")
    clean(disk)
    assert digest(base) == base_digest  # the shared base is never written
    assert holds(src / "disks/disk0.qcow2", 0x11, size="32M")
    assert storage.disk_compact(library, "src").disks[0].method in ("rewritten", "unchanged")
    assert clones.sweep_bases(library) == []  # both still use the base


def test_a_raw_disk_gets_holes_punched(library: Library) -> None:
    bundle = make_vm(library, "vm")
    vm_media.add(library, "vm", GiB, "raw")
    disk = bundle / "disks/disk0.raw"
    write(disk, 0xCD, "raw", size="64M")
    write(disk, 0x00, "raw", size="40M")
    original = bundle / "original.raw"
    shutil.copyfile(disk, original)
    done = storage.disk_compact(library, "vm").disks[0]
    assert done.method == "holes punched" and done.before - done.after >= 40 * MiB
    assert identical(original, disk, "raw") and disk.stat().st_size == GiB
    print(f"raw: {done.before} -> {done.after} bytes on the host")


def test_a_raw_disk_is_rewritten_where_fallocate_is_missing(
    library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_vm(library, "vm")
    vm_media.add(library, "vm", GiB, "raw")
    disk = bundle / "disks/disk0.raw"
    write(disk, 0xCD, "raw", size="64M")
    write(disk, 0x00, "raw", size="40M")
    original = bundle / "original.raw"
    shutil.copyfile(disk, original)
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "qemu-img").symlink_to(qemu_img.binary())
    monkeypatch.setenv("PATH", str(tools))  # qemu-img only: no fallocate (as on macOS)
    done = storage.disk_compact(library, "vm").disks[0]
    # qemu-img allocates the first block of every raw file it creates (to probe alignment)
    assert done.method == "rewritten" and done.before - done.after >= 40 * MiB - 4096
    assert identical(original, disk, "raw") and disk.stat().st_size == GiB
    assert scratch_files(bundle) == []


# -- what it refuses or leaves alone ------------------------------------------------------------


def test_a_disk_with_snapshots_is_refused_and_unchanged(library: Library) -> None:
    disk = zeroed_disk(library)
    snapshots.create(library, "vm", "before upgrade")
    kept = digest(disk)
    with pytest.raises(StorageError, match="snapshots \\('before upgrade'\\)") as err:
        storage.disk_compact(library, "vm")
    assert "vmdesk snapshot delete vm" in (err.value.hint or "")
    assert digest(disk) == kept and scratch_files(disk.parent.parent) == []
    snapshots.delete(library, "vm", "before upgrade")
    assert storage.disk_compact(library, "vm").reclaimed >= 48 * MiB


def test_a_vm_that_is_not_stopped_is_refused(library: Library) -> None:
    disk = zeroed_disk(library)
    bundle = library.find("vm")
    kept = digest(disk)
    with bundle.lock("running the VM (supervisor pid 1)"):  # what a supervisor holds
        with pytest.raises(Conflict, match="is running") as err:
            storage.disk_compact(library, "vm")
        assert "stop it first (`vmdesk stop vm`)" in (err.value.hint or "")
        # started between the status check and the lock: the lock refuses it
        racing = Library(library.root, status=lambda b: "stopped")
        with pytest.raises(Conflict, match="in use") as err:
            storage.disk_compact(racing, "vm")
        assert "stop the VM first" in (err.value.hint or "")
    paused = Library(library.root, status=lambda b: "paused")
    with pytest.raises(Conflict, match="is paused") as err:
        storage.disk_compact(paused, "vm")
    assert "stop it first" in (err.value.hint or "")
    bundle.files.suspended_state.write_bytes(b"saved")
    with pytest.raises(Conflict, match="suspended") as err:
        storage.disk_compact(library, "vm")
    assert "stop it first" in (err.value.hint or "")
    assert digest(disk) == kept


def test_disks_that_are_not_the_vms_own_are_left_alone(library: Library, tmp_path: Path) -> None:
    bundle = make_vm(library, "vm")
    outside = tmp_path / "data.qcow2"
    images.create(outside, GiB)
    vm_media.attach(library, "vm", outside)
    vm_media.add(library, "vm", GiB)
    linked = bundle / "disks/disk0.qcow2"
    os.link(linked, tmp_path / "another-name.qcow2")
    vm_media.attach(library, "vm", _inside(bundle))
    vm_media.attach(library, "vm", _inside(bundle, "ro.qcow2"), read_only=True)
    report = storage.disk_compact(library, "vm")
    reasons = {d.file: (d.method, d.reason) for d in report.disks}
    assert reasons == {
        str(outside): ("skipped", "is outside the VM's bundle"),
        "disks/disk0.qcow2": ("skipped", "has 2 hard links, which a rewrite would split"),
        "disks/own.qcow2": ("unchanged", ""),  # empty: nothing to give back
        "disks/ro.qcow2": ("skipped", "is attached read-only"),
    }
    with pytest.raises(StorageError, match="outside the VM's bundle") as err:
        storage.disk_compact(library, "vm", "data.qcow2")
    assert "vmdesk disk convert" in (err.value.hint or "")
    with pytest.raises(NotFound, match="no disk"):
        storage.disk_compact(library, "vm", "nothing.qcow2")


def _inside(bundle: Path, name: str = "own.qcow2") -> Path:
    path = bundle / "disks" / name
    images.create(path, GiB)
    return path


def test_a_disk_another_vm_uses_or_builds_on_is_refused(library: Library) -> None:
    disk = zeroed_disk(library, "a")
    kept = digest(disk)
    other = make_vm(library, "b")
    overlay = other / "disks/over.qcow2"  # made by hand: VM-Desk keeps its bases in .bases/
    qemu_img.run(
        ["create", "-q", "-f", "qcow2", "-b", os.path.relpath(disk, overlay.parent),
         "-F", "qcow2", str(overlay)], what="creating an overlay",
    )  # fmt: skip
    _add_to_description(library, "b", "disks/over.qcow2")
    with pytest.raises(Conflict, match=r"backing file of disks/over\.qcow2 of VM 'b'"):
        storage.disk_compact(library, "a")
    overlay.unlink()
    _add_to_description(library, "b", str(disk), replace=True)  # b names a's disk itself
    with pytest.raises(StorageError, match="also used by VM 'b'"):
        storage.disk_compact(library, "a", "0")
    assert storage.disk_compact(library, "a").disks[0].method == "skipped"
    assert digest(disk) == kept


def _add_to_description(library: Library, vm: str, file: str, *, replace: bool = False) -> None:
    from vmdesk.core.config import Disk

    bundle = library.find(vm)
    config = bundle.load()
    config.disks = [*([] if replace else config.disks), Disk(file=file)]
    bundle.save(config)


# -- failures and interruptions ------------------------------------------------------------------

_FAILING = """#!/bin/sh
if [ "$1" = "{fail}" ]; then
    "{real}" "$@" >/dev/null 2>&1  # does its work (a whole copy is there), then fails
    echo "qemu-img: made to fail by the test" >&2
    exit {code}
fi
exec "{real}" "$@"
"""


@pytest.mark.parametrize(("fail", "code"), [("convert", 1), ("check", 1), ("compare", 2)])
def test_a_failing_qemu_img_leaves_the_original_as_it_was(
    library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: str, code: int
) -> None:
    disk = zeroed_disk(library)
    kept = digest(disk)
    tools = tmp_path / "tools"
    tools.mkdir()
    wrapper = tools / "qemu-img"
    wrapper.write_text(_FAILING.format(fail=fail, real=qemu_img.binary(), code=code))
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(StorageError) as err:
        storage.disk_compact(library, "vm")
    assert err.value.hint
    assert digest(disk) == kept and scratch_files(disk.parent.parent) == []
    monkeypatch.undo()  # the real qemu-img again
    clean(disk)


_KILLABLE = """
import sys, time
from pathlib import Path
from vmdesk.core.library import Library
from vmdesk.service import storage

def slow(step, percent):
    if "comparing" in step:
        Path(sys.argv[2]).touch()
        time.sleep(60)

storage.disk_compact(Library(Path(sys.argv[1])), "vm", progress=slow)
"""


def test_a_killed_compaction_leaves_the_original_and_is_swept_next_time(
    library: Library, tmp_path: Path
) -> None:
    disk = zeroed_disk(library)
    kept = digest(disk)
    marker = tmp_path / "comparing"
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(library.root), str(marker)])
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert digest(disk) == kept
    assert scratch_files(disk.parent.parent)  # the whole copy was left behind ...
    assert storage.disk_compact(library, "vm").reclaimed >= 48 * MiB
    assert scratch_files(disk.parent.parent) == []  # ... and swept
    clean(disk)


# -- the CLI and the API ---------------------------------------------------------------------


def test_the_command_and_its_json(tmp_path: Path) -> None:
    vmdesk = Run(tmp_path / "library")
    vmdesk("create", "vm", "--cpus", "1")
    vmdesk("disk", "add", "vm", "--size", "1")
    disk = tmp_path / "library/vm.vmdesk/disks/disk0.qcow2"
    write(disk, 0xAB, size="64M")
    write(disk, 0x00, size="48M")
    out = vmdesk("disk", "compact", "vm").stdout
    assert "disks/disk0.qcow2: 64.3 MiB -> " in out and "reclaimed 48" in out
    data = json.loads(vmdesk("disk", "compact", "vm", "disk0.qcow2", "--json").stdout)
    assert data["vm"] == "vm" and data["reclaimed"] == 0
    assert data["disks"][0]["method"] == "unchanged"
    failed = vmdesk("disk", "compact", "vm", "7", ok=False)
    assert "no disk '7'" in failed.stderr


def test_the_api_route(library: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.web.conftest import LiveServer

    monkeypatch.setenv("VMDESK_HOME", str(library.root))
    disk = zeroed_disk(library)
    live = LiveServer(library.root)
    try:
        with live.client() as client:
            answer = client.post("/api/vms/vm/disks/0/compact")
            assert answer.status_code == 200, answer.text
            assert answer.json()["disks"][0]["reclaimed"] >= 48 * MiB
            assert client.post("/api/vms/vm/disks/compact").json()["reclaimed"] == 0
            assert client.post("/api/vms/nope/disks/compact").status_code == 404
            with library.find("vm").lock("running the VM (supervisor pid 1)"):
                refused = client.post("/api/vms/vm/disks/compact")
            assert refused.status_code == 409 and "stop" in refused.json()["hint"]
    finally:
        live.close()
    clean(disk)
