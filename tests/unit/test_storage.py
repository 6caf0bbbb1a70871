"""Disk images, a VM's media, snapshots and clones, with the real qemu-img and qemu-io."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from vmdesk.core import config as vmconfig
from vmdesk.core.errors import ConfigError, Conflict, NotFound, Problem, StorageError
from vmdesk.core.library import Library
from vmdesk.storage import clones, images, snapshots, vm_media

GiB = 1 << 30
MiB = 1 << 20


def qemu_io(path: Path, command: str, fmt: str = "qcow2") -> str:
    done = subprocess.run(
        ["qemu-io", "-f", fmt, "-c", command, str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "failed" not in done.stdout.lower(), done.stdout  # pattern checks print this
    return done.stdout


def write(path: Path, byte: int, fmt: str = "qcow2", offset: int = 0, size: str = "1M") -> None:
    qemu_io(path, f"write -P {byte:#x} {offset} {size}", fmt)


def holds(path: Path, byte: int, fmt: str = "qcow2", offset: int = 0, size: str = "1M") -> bool:
    done = subprocess.run(
        ["qemu-io", "-f", fmt, "-c", f"read -P {byte:#x} {offset} {size}", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    return done.returncode == 0 and "verification failed" not in done.stdout.lower()


def clean(path: Path) -> None:
    images.verify(path)  # raises unless `qemu-img check` is clean


@pytest.fixture
def library(tmp_path: Path) -> Library:
    return Library(tmp_path / "lib")


def make_vm(library: Library, name: str = "src", **fields: Any) -> Path:
    library.create(vmconfig.from_dict({"name": name, **fields}))
    return library.find(name).path


# -- image files ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_create_info_grow_for_both_formats(tmp_path: Path, fmt: images.Format) -> None:
    path = tmp_path / f"big.{fmt}"
    info = images.create(path, 64 * GiB, fmt)
    assert (info.format, info.virtual_size) == (fmt, 64 * GiB)
    assert info.allocated < 2 * MiB  # sparse: a fresh 64 GiB disk takes next to nothing
    assert info.backing_chain == [] and info.snapshots == []
    grown = images.grow(path, 80 * GiB)
    assert grown.virtual_size == 80 * GiB
    with pytest.raises(StorageError, match="cut off data") as err:
        images.grow(path, 10 * GiB)
    assert "--shrink" in (err.value.hint or "")
    assert images.inspect(path).virtual_size == 80 * GiB
    clean(path)


def test_shrink_needs_the_flag_and_then_works(tmp_path: Path) -> None:
    path = tmp_path / "disk.raw"
    images.create(path, 2 * GiB, "raw")
    assert images.grow(path, 1 * GiB, shrink=True).virtual_size == 1 * GiB


def test_create_refuses_to_overwrite_and_bad_sizes(tmp_path: Path) -> None:
    path = tmp_path / "disk.qcow2"
    images.create(path, GiB)
    write(path, 0xAB)
    with pytest.raises(Conflict, match="already exists"):
        images.create(path, GiB)
    assert holds(path, 0xAB)  # untouched
    with pytest.raises(StorageError, match="above zero"):
        images.create(tmp_path / "zero.qcow2", 0)
    with pytest.raises(NotFound):
        images.create(tmp_path / "no" / "such" / "dir.qcow2", GiB)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.qcow2"]  # no leftovers


def test_convert_both_ways_keeps_data_and_reports_progress(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    images.create(raw, 256 * MiB, "raw")
    write(raw, 0x5A, "raw", offset=100 * MiB, size="8M")
    seen: list[float] = []
    qcow = images.convert(raw, tmp_path / "disk.qcow2", "qcow2", progress=seen.append)
    assert qcow.format == "qcow2" and qcow.virtual_size == 256 * MiB
    assert seen and seen[-1] == 100.0
    assert holds(tmp_path / "disk.qcow2", 0x5A, offset=100 * MiB, size="8M")
    back = images.convert(tmp_path / "disk.qcow2", tmp_path / "again.raw", "raw")
    assert back.format == "raw"
    assert holds(tmp_path / "again.raw", 0x5A, "raw", offset=100 * MiB, size="8M")
    clean(tmp_path / "disk.qcow2")


def test_inspect_of_a_missing_or_bogus_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        images.inspect(tmp_path / "nope.qcow2")
    bogus = tmp_path / "bogus.qcow2"
    bogus.write_bytes(b"QFI\xfb\0\0\0\x63" + b"\0" * 100)  # qcow2 version 99
    with pytest.raises(StorageError) as err:
        images.inspect(bogus)
    assert err.value.hint


# -- a VM's disks and CD-ROMs -----------------------------------------------------------------


def test_add_attach_list_grow_and_detach(library: Library, tmp_path: Path) -> None:
    bundle = make_vm(library)
    disk, info = vm_media.add(library, "src", 20 * GiB)
    assert disk.file == "disks/disk0.qcow2" and info.virtual_size == 20 * GiB
    outside = tmp_path / "data.raw"
    images.create(outside, GiB, "raw")
    attached, _ = vm_media.attach(library, "src", outside, read_only=True)
    assert attached.file == str(outside) and attached.format == "raw"
    config = library.find("src").load()
    assert str(outside) in config.approved_paths  # naming it approved it
    with pytest.raises(Conflict, match="already attached"):
        vm_media.attach(library, "src", outside)
    overlay = tmp_path / "overlay.qcow2"
    images.create(overlay, GiB, backing=tmp_path / "data.raw")
    with pytest.raises(StorageError, match="overlay on") as err:
        vm_media.attach(library, "src", overlay)
    assert "disk convert" in (err.value.hint or "")
    listed = vm_media.disks(library, "src")
    assert [d.info.virtual_size for d in listed if d.info] == [20 * GiB, GiB]
    assert vm_media.grow(library, "src", "disk0.qcow2", 30 * GiB).virtual_size == 30 * GiB
    with pytest.raises(StorageError, match="outside the VM's bundle"):
        vm_media.detach(library, "src", "1", delete=True)
    assert len(library.find("src").load().disks) == 2  # refused: nothing changed
    vm_media.detach(library, "src", "1")
    assert outside.exists()  # detached, never deleted
    vm_media.detach(library, "src", "disk0.qcow2", delete=True)
    assert not (bundle / "disks/disk0.qcow2").exists()
    assert library.find("src").load().disks == []
    with pytest.raises(NotFound, match="no disk"):
        vm_media.detach(library, "src", "0")


def test_what_a_killed_disk_add_made_goes_at_the_next_change_and_a_detached_disk_stays(
    library: Library,
) -> None:
    bundle = make_vm(library)
    vm_media.add(library, "src", GiB)
    vm_media.add(library, "src", GiB)
    vm_media.detach(library, "src", "1")  # detached, kept in the bundle: the user's
    disks = bundle / "disks"
    # An add killed after qemu-img made its file, before the description named it:
    images.create(disks / "disk2.qcow2", GiB)
    (disks / ".disk2.qcow2.adding").touch()
    (disks / ".disk2.qcow2.0badf00d.partial").touch()
    vm_media.add(library, "src", GiB)  # the next change: disk2 again, a whole one
    assert (disks / ".disk2.qcow2.adding").exists() is False
    assert sorted(p.name for p in disks.iterdir()) == ["disk0.qcow2", "disk1.qcow2",
                                                         "disk2.qcow2"]  # fmt: skip
    assert [d.file for d in library.find("src").load().disks] == ["disks/disk0.qcow2",
                                                                  "disks/disk2.qcow2"]  # fmt: skip
    # An add killed after the description named its file, before its marker went:
    (disks / ".disk2.qcow2.adding").touch()  # the file stays, the marker goes
    vm_media.grow(library, "src", "disk2.qcow2", 2 * GiB)
    assert (disks / "disk2.qcow2").exists() and not (disks / ".disk2.qcow2.adding").exists()


def test_create_and_edit_take_a_disk_for_what_it_is_and_refuse_what_attach_refuses(
    library: Library, tmp_path: Path
) -> None:
    from vmdesk.service import settings

    named_raw = tmp_path / "disk.img"
    images.create(named_raw, GiB, "qcow2")  # a qcow2 whatever its name says
    data: dict[str, Any] = {}
    settings.apply(data, {"disks": [str(named_raw)]})
    assert data["disks"][0]["format"] == "qcow2"
    for bad, words in [(tmp_path / "missing.qcow2", "does not exist"),
                       (tmp_path, "is a folder")]:  # fmt: skip
        with pytest.raises(NotFound, match=words) as err:
            settings.apply({}, {"disks": [str(bad)]})
        assert err.value.hint


def test_a_clone_of_a_vm_whose_disk_is_missing_is_refused_with_what_to_do(
    library: Library, tmp_path: Path
) -> None:
    make_vm(library)
    outside = tmp_path / "gone.raw"
    images.create(outside, GiB, "raw")
    vm_media.attach(library, "src", outside)
    outside.unlink()
    with pytest.raises(NotFound, match="disk 0 of VM 'src'") as err:
        clones.clone(library, "src", "dst")
    assert "disk rm src 0" in (err.value.hint or "")
    assert [b.dir_name for b in library.bundles()] == ["src.vmdesk"]


def test_changes_are_refused_while_the_vm_runs(library: Library) -> None:
    make_vm(library)
    vm_media.add(library, "src", GiB)
    bundle = library.find("src")
    with bundle.lock("running the VM (supervisor pid 1)"):  # what a supervisor holds
        for change in (
            lambda: vm_media.add(library, "src", GiB),
            lambda: vm_media.grow(library, "src", "0", 2 * GiB),
            lambda: clones.clone(library, "src", "copy"),
        ):
            with pytest.raises(Conflict) as err:
                change()
            assert "vmdesk stop" in (err.value.hint or "")
    assert len(bundle.load().disks) == 1
    assert not (bundle.path / "disks/disk1.qcow2").exists()


def test_a_refused_description_removes_the_new_disk(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_vm(library)

    def refuse(*args: object) -> None:
        raise ConfigError([Problem("disks", "refused for this test", "none")])

    monkeypatch.setattr(library, "save_locked", refuse)
    with pytest.raises(ConfigError):
        vm_media.add(library, "src", GiB)
    assert not list((bundle / "disks").glob("*"))
    assert library.find("src").load().disks == []


def test_cd_insert_boot_order_and_eject(library: Library, tmp_path: Path) -> None:
    make_vm(library)
    vm_media.add(library, "src", GiB)
    iso = tmp_path / "install.iso"
    iso.write_bytes(b"\0" * 2048)
    vm_media.insert_cd(library, "src", iso, boot=True)
    config = library.find("src").load()
    assert config.cdroms[0].file == str(iso) and config.cdroms[0].boot_order == 1
    assert config.disks[0].boot_order == 2
    vm_media.boot_from(library, "src", "disk")
    config = library.find("src").load()
    assert (config.disks[0].boot_order, config.cdroms[0].boot_order) == (1, 2)
    assert vm_media.eject_cd(library, "src") == [str(iso)]
    assert library.find("src").load().cdroms == []
    with pytest.raises(NotFound, match="no CD-ROM"):
        vm_media.eject_cd(library, "src")
    with pytest.raises(NotFound):
        vm_media.insert_cd(library, "src", tmp_path / "missing.iso")


# -- snapshots -----------------------------------------------------------------------------------


def test_snapshot_overwrite_revert_reads_the_original(library: Library) -> None:
    bundle = make_vm(library)
    vm_media.add(library, "src", GiB)
    vm_media.add(library, "src", GiB)
    disk0, disk1 = bundle / "disks/disk0.qcow2", bundle / "disks/disk1.qcow2"
    write(disk0, 0xAA)
    write(disk1, 0x11)
    s1 = snapshots.create(library, "src", "clean install")
    write(disk0, 0xBB)
    write(disk1, 0x22)
    snapshots.revert(library, "src", "clean install")
    assert holds(disk0, 0xAA) and holds(disk1, 0x11)
    tree = snapshots.tree(library, "src")
    assert tree.current == s1.id and [s.name for s in tree.snapshots] == ["clean install"]
    clean(disk0)
    clean(disk1)


def test_snapshot_tree_branches_and_deleting_a_parent_keeps_children(library: Library) -> None:
    bundle = make_vm(library)
    vm_media.add(library, "src", GiB)
    disk = bundle / "disks/disk0.qcow2"
    write(disk, 0x01)
    s1 = snapshots.create(library, "src", "one")
    write(disk, 0x02)
    s2 = snapshots.create(library, "src", "two")
    snapshots.revert(library, "src", "one")
    write(disk, 0x03)
    s3 = snapshots.create(library, "src", "three")
    tree = snapshots.tree(library, "src")
    assert {s.name: s.parent for s in tree.snapshots} == {"one": None, "two": s1.id, "three": s1.id}
    assert [c.name for c in tree.children(s1.id)] == ["two", "three"]
    snapshots.delete(library, "src", "one")
    tree = snapshots.tree(library, "src")
    assert {s.name: s.parent for s in tree.snapshots} == {"two": None, "three": None}
    snapshots.revert(library, "src", s2.id)
    assert holds(disk, 0x02)
    snapshots.revert(library, "src", "three")
    assert holds(disk, 0x03)
    assert tree.current == s3.id
    assert images.inspect(disk).snapshots == [f"vmdesk-{s2.id}", f"vmdesk-{s3.id}"]
    with pytest.raises(Conflict, match="exists"):
        snapshots.create(library, "src", "two")
    with pytest.raises(NotFound):
        snapshots.revert(library, "src", "one")
    clean(disk)


def test_snapshots_need_qcow2_disks_and_some_disk(library: Library, tmp_path: Path) -> None:
    make_vm(library)
    with pytest.raises(StorageError, match="no disks"):
        snapshots.create(library, "src")
    vm_media.add(library, "src", GiB, "raw")
    with pytest.raises(StorageError, match="raw image") as err:
        snapshots.create(library, "src")
    assert "convert" in (err.value.hint or "")


def test_revert_refuses_disks_added_after_the_snapshot(library: Library) -> None:
    bundle = make_vm(library)
    vm_media.add(library, "src", GiB)
    snapshots.create(library, "src", "s")
    vm_media.add(library, "src", GiB)
    write(bundle / "disks/disk0.qcow2", 0x44)
    with pytest.raises(StorageError, match="attached after"):
        snapshots.revert(library, "src", "s")
    assert holds(bundle / "disks/disk0.qcow2", 0x44)  # checked before anything changed


def test_an_interrupted_snapshot_leaves_an_orphan_that_is_cleaned(library: Library) -> None:
    bundle = make_vm(library)
    vm_media.add(library, "src", GiB)
    disk = bundle / "disks/disk0.qcow2"
    # What a kill between "snapshot the disks" and "write the tree" leaves behind:
    subprocess.run(["qemu-img", "snapshot", "-c", "vmdesk-deadbeef", str(disk)], check=True)
    snapshots.create(library, "src", "real")
    tags = images.inspect(disk).snapshots
    assert "vmdesk-deadbeef" not in tags and len(tags) == 1


# -- clones ---------------------------------------------------------------------------------------


def _vm_with_data(library: Library, fmt: images.Format = "qcow2", **fields: Any) -> Path:
    bundle = make_vm(library, **fields)
    vm_media.add(library, "src", 64 * GiB, fmt)
    write(bundle / f"disks/disk0.{fmt}", 0xAA, fmt)
    return bundle


def test_linked_clone_shares_a_protected_base_and_writes_stay_apart(library: Library) -> None:
    src = _vm_with_data(library, nics=[{"mode": "nat"}])
    made = clones.clone(library, "src", "dst", linked=True)
    src_disk, dst_disk = src / "disks/disk0.qcow2", made.path / "disks/disk0.qcow2"
    base = next(p for p in clones.bases_dir(library).iterdir() if not p.name.startswith("."))
    assert base.stat().st_mode & 0o777 == 0o444
    for disk in (src_disk, dst_disk):
        chain = images.inspect(disk).backing_chain
        assert [os.path.realpath(p) for p in chain] == [str(base)]
        assert images.inspect(disk).allocated < 2 * MiB  # an overlay, not a copy
    before = base.read_bytes()[:4096]
    write(dst_disk, 0xCC)
    write(src_disk, 0xDD, offset=4 * MiB)
    assert holds(src_disk, 0xAA) and holds(dst_disk, 0xCC)
    assert holds(base, 0xAA) and base.read_bytes()[:4096] == before
    assert not holds(dst_disk, 0xDD, offset=4 * MiB)
    src_config, dst_config = library.find("src").load(), library.find("dst").load()
    assert dst_config.uuid != src_config.uuid
    assert dst_config.nics[0].mac != src_config.nics[0].mac
    for disk in (src_disk, dst_disk, base):
        clean(disk)


def test_deleting_source_or_clone_never_breaks_the_others(library: Library) -> None:
    _vm_with_data(library)
    clones.clone(library, "src", "a", linked=True)
    clones.clone(library, "a", "b", linked=True)  # a chain: b -> base(a) -> base(src)
    assert len(images.inspect(library.find("b").path / "disks/disk0.qcow2").backing_chain) == 2
    library.delete("src")
    assert clones.sweep_bases(library) == []  # a and b still use both bases
    assert holds(library.find("a").path / "disks/disk0.qcow2", 0xAA)
    library.delete("a")
    assert clones.sweep_bases(library) == []  # b still uses both
    assert holds(library.find("b").path / "disks/disk0.qcow2", 0xAA)
    library.delete("b")
    assert len(clones.sweep_bases(library)) == 2  # the last user went
    assert list(clones.bases_dir(library).iterdir()) == []


def test_linked_clone_of_a_raw_disk_moves_the_source_to_an_overlay(library: Library) -> None:
    src = _vm_with_data(library, "raw")
    clones.clone(library, "src", "dst", linked=True)
    config = library.find("src").load()
    assert (config.disks[0].file, config.disks[0].format) == ("disks/disk0.qcow2", "qcow2")
    assert not (src / "disks/disk0.raw").exists()
    assert holds(src / "disks/disk0.qcow2", 0xAA)
    assert holds(library.find("dst").path / "disks/disk0.qcow2", 0xAA)


def test_linked_clone_refuses_snapshots_and_outside_disks(library: Library, tmp_path: Path) -> None:
    _vm_with_data(library)
    snapshots.create(library, "src", "s")
    with pytest.raises(StorageError, match="snapshots"):
        clones.clone(library, "src", "dst", linked=True)
    snapshots.delete(library, "src", "s")
    outside = tmp_path / "outside.qcow2"
    images.create(outside, GiB)
    vm_media.attach(library, "src", outside)
    with pytest.raises(StorageError, match="outside the VM's bundle"):
        clones.clone(library, "src", "dst", linked=True)
    assert [b.dir_name for b in library.bundles()] == ["src.vmdesk"]


def test_full_clone_copies_only_data_and_drops_snapshots(library: Library) -> None:
    src = _vm_with_data(library)
    (src / "nvram" / "efivars.fd").write_bytes(b"secret variables")
    (src / "boot").mkdir(exist_ok=True)
    (src / "boot" / "vmlinuz").write_bytes(b"kernel")
    write(src / "disks/disk0.qcow2", 0x77, offset=32 * GiB, size="100M")
    snapshots.create(library, "src", "s")
    progress: list[tuple[int, int]] = []
    made = clones.clone(library, "src", "dst", progress=lambda d, t: progress.append((d, t)))
    src_disk, dst_disk = src / "disks/disk0.qcow2", made.path / "disks/disk0.qcow2"
    assert images.inspect(dst_disk).allocated < images.inspect(src_disk).allocated + 4 * MiB
    assert images.inspect(dst_disk).allocated > 100 * MiB
    assert progress and progress[-1][0] == progress[-1][1]
    assert holds(dst_disk, 0x77, offset=32 * GiB, size="100M")
    assert images.inspect(dst_disk).snapshots == []  # the source's snapshots stay its own
    assert not (made.path / "nvram" / "efivars.fd").exists()  # fresh firmware variables
    assert (made.path / "boot" / "vmlinuz").read_bytes() == b"kernel"
    write(dst_disk, 0xEE)
    assert holds(src_disk, 0xAA)
    clean(dst_disk)


def test_clone_refuses_a_running_vm_and_port_clashes(library: Library) -> None:
    _vm_with_data(library, nics=[{"forwards": [{"host_port": 2222, "guest_port": 22}]}])
    running = Library(library.root, status=lambda bundle: "running")
    with pytest.raises(Conflict, match="running") as err:
        clones.clone(running, "src", "dst")
    assert "stop it" in (err.value.hint or "")
    with pytest.raises(Conflict, match="port forwards") as err:
        clones.clone(library, "src", "dst")
    assert "--no-forwards" in (err.value.hint or "")
    made = clones.clone(library, "src", "dst", forwards=False)
    assert made.load().nics[0].forwards == []
    assert not list(library.root.glob(".create-*"))


def test_export_of_a_linked_clone_is_standalone(library: Library, tmp_path: Path) -> None:
    _vm_with_data(library)
    clones.clone(library, "src", "dst", linked=True)
    exported = clones.export(library, "dst", tmp_path)
    disk = exported / "disks/disk0.qcow2"
    assert images.inspect(disk).backing_chain == []
    assert holds(disk, 0xAA)


_KILLABLE_CLONE = """
import sys, time
from pathlib import Path
from vmdesk.core.library import Library
from vmdesk.storage import clones

def slow(done, total):
    Path(sys.argv[2]).touch()
    time.sleep(60)

clones.clone(Library(Path(sys.argv[1])), "src", "dst", progress=slow)
"""


def test_a_full_clone_killed_mid_copy_leaves_the_library_consistent(
    library: Library, tmp_path: Path
) -> None:
    src = _vm_with_data(library)
    write(src / "disks/disk0.qcow2", 0x99, offset=GiB, size="64M")
    marker = tmp_path / "copying"
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE_CLONE, str(library.root), str(marker)])
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert [b.dir_name for b in library.bundles()] == ["src.vmdesk"]  # no half a VM
    assert list(library.root.glob(".create-*"))  # the staging dir is left ...
    assert library.sweep()  # ... and swept, as every create does first
    assert not list(library.root.glob(".create-*"))
    assert holds(src / "disks/disk0.qcow2", 0x99, offset=GiB, size="64M")
    clean(src / "disks/disk0.qcow2")
    clones.clone(library, "src", "dst")  # and cloning works again
    assert holds(library.find("dst").path / "disks/disk0.qcow2", 0xAA)


def test_json_of_tree_round_trips(library: Library) -> None:
    _vm_with_data(library)
    snapshots.create(library, "src", "a")
    data = json.loads(json.dumps(snapshots.tree(library, "src").as_dict()))
    assert data["snapshots"][0]["name"] == "a" and data["current"] == data["snapshots"][0]["id"]
