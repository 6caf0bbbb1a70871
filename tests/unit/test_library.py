"""The library of bundles: create, find, rename, delete, import, export, MACs, port clashes."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from vmdesk.core import config as vmconfig
from vmdesk.core import macs
from vmdesk.core.errors import ConfigError, Conflict, NotFound
from vmdesk.core.library import Library


@pytest.fixture
def library(tmp_path: Path) -> Library:
    return Library(tmp_path / "lib")


def _create(library: Library, name: str, **fields: Any) -> vmconfig.VMConfig:
    config = vmconfig.from_dict({"name": name, **fields})
    library.create(config)
    return library.find(name).load()


def test_create_find_by_name_and_uuid(library: Library) -> None:
    made = _create(library, "alpha", cpus=1)
    assert library.find("alpha").load().uuid == made.uuid
    assert library.find(str(made.uuid)).load().name == "alpha"
    assert library.find(str(made.uuid)[:8]).load().name == "alpha"
    with pytest.raises(NotFound) as err:
        library.find("beta")
    assert "vmdesk list" in (err.value.hint or "")
    assert [b.path.name for b in library.bundles()] == ["alpha.vmdesk"]
    assert not list(library.root.glob(".create-*"))


def test_name_clash(library: Library) -> None:
    _create(library, "alpha", cpus=1)
    with pytest.raises(Conflict, match="already exists"):
        _create(library, "alpha", cpus=1)


def test_macs_are_generated_stable_local_and_unique(library: Library) -> None:
    a = _create(library, "a", cpus=1, nics=[{}, {}])
    b = _create(library, "b", cpus=1, nics=[{}])
    all_macs = [n.mac for n in a.nics + b.nics]
    assert all(m is not None and macs.is_locally_administered(m) for m in all_macs)
    assert all(int(m[:2], 16) & 1 == 0 for m in all_macs if m)  # unicast
    assert len(set(all_macs)) == 3
    assert library.find("a").load().nics[0].mac == a.nics[0].mac  # stored, so stable


def test_generated_mac_avoids_taken_ones() -> None:
    seed = "some-uuid/nic0"
    first = macs.generate(seed)
    assert macs.generate(seed) == first
    assert macs.generate(seed, taken={first}) != first


def test_user_mac_clash_across_the_library(library: Library) -> None:
    _create(library, "a", cpus=1, nics=[{"mac": "52:54:00:00:00:10"}])
    with pytest.raises(ConfigError) as err:
        _create(library, "b", cpus=1, nics=[{"mac": "52:54:00:00:00:10"}])
    assert err.value.problems[0].field == "nics[0].mac"
    assert "already used by VM 'a'" in err.value.problems[0].message


def test_host_port_clash_with_another_vm(library: Library) -> None:
    fwd = {"host_port": 2222, "guest_port": 22}
    _create(library, "a", cpus=1, nics=[{"forwards": [fwd]}])
    with pytest.raises(ConfigError) as err:
        _create(library, "b", cpus=1, nics=[{"forwards": [{**fwd, "host_address": "0.0.0.0"}]}])
    assert err.value.problems[0].field == "nics[0].forwards"
    assert "already forwarded by VM 'a'" in err.value.problems[0].message
    _create(library, "c", cpus=1, nics=[{"forwards": [{**fwd, "protocol": "udp"}]}])  # fine


def test_too_many_cpus_and_missing_share(library: Library, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _create(library, "big", cpus=256, shares=[{"tag": "x", "path": str(tmp_path / "no")}])
    fields = {p.field: p for p in err.value.problems}
    assert "this host has" in fields["cpus"].message
    assert "does not exist" in fields["shares[0].path"].message
    assert not library.bundles()  # nothing half-created


def test_update_rename_delete(library: Library) -> None:
    _create(library, "a", cpus=1)
    bundle = library.find("a")
    config = bundle.load()
    config.memory = 1024
    saved = library.update(bundle, config)
    assert library.find("a").load().memory == 1024 == saved.memory
    renamed = library.rename("a", "b")
    assert renamed.path.name == "b.vmdesk" and renamed.load().name == "b"
    with pytest.raises(ConfigError):
        library.rename("b", "bad name")
    assert library.find("b").load().name == "b"
    library.delete("b")
    assert library.bundles() == []
    assert list(library.root.iterdir()) == []


def test_a_delete_removes_what_a_killed_delete_left(library: Library) -> None:
    _create(library, "a")
    _create(library, "b")
    trash = library.root / ".delete-999999999-abc"  # a delete killed after its move
    trash.mkdir()
    library.find("a").path.rename(trash / "a.vmdesk")
    library.delete("b")
    assert list(library.root.iterdir()) == []


def test_delete_refuses_a_running_vm(library: Library) -> None:
    _create(library, "a", cpus=1)
    bundle = library.find("a")
    with bundle.lock("running"):  # what the supervisor holds while the VM runs
        assert library.status(bundle) == "running"
        with pytest.raises(Conflict, match="running"):
            library.delete("a")
    assert library.find("a")


def test_export_then_import_elsewhere(library: Library, tmp_path: Path) -> None:
    made = _create(library, "a", cpus=1, disks=[{"file": "disks/root.img", "format": "raw"}])
    (library.find("a").files.disks / "root.img").write_bytes(b"data")
    out = tmp_path / "out"
    out.mkdir()
    exported = library.export("a", out)
    assert exported == out / "a.vmdesk"
    with pytest.raises(Conflict):
        library.export("a", out)

    other = Library(tmp_path / "other-machine")
    imported = other.import_bundle(exported)
    assert imported.load().uuid == made.uuid  # same VM, new home
    assert (imported.path / "disks" / "root.img").read_bytes() == b"data"

    with pytest.raises(Conflict, match="already exists"):
        library.import_bundle(exported)
    copy = library.import_bundle(exported, name="a-copy").load()
    assert copy.uuid != made.uuid  # a second copy in one library gets its own identity
    assert copy.nics[0].mac != made.nics[0].mac


def test_import_rejects_non_bundles(library: Library, tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    with pytest.raises(Exception) as err:
        library.import_bundle(tmp_path / "junk")
    assert "not a VM-Desk bundle" in str(err.value)
    broken = tmp_path / "broken.vmdesk"
    broken.mkdir()
    (broken / "config.json").write_text("{")
    with pytest.raises(ConfigError):
        library.import_bundle(broken)
    assert library.bundles() == []


def test_duplicate_uuid_on_create_gets_a_new_one(library: Library) -> None:
    fixed = str(uuid.uuid4())
    _create(library, "a", cpus=1, uuid=fixed)
    b = _create(library, "b", cpus=1, uuid=fixed)
    assert str(b.uuid) != fixed


def test_library_copied_elsewhere_still_opens(library: Library, tmp_path: Path) -> None:
    _create(library, "a", cpus=1)
    shutil.copytree(library.root, tmp_path / "copy")
    assert Library(tmp_path / "copy").find("a").load().name == "a"


@pytest.mark.parametrize("ref", ["x" * 64, "x" * 300, "a/b", "../a", "a b", "-a", ""])
def test_a_reference_that_cannot_name_a_vm_is_simply_not_found(library: Library, ref: str) -> None:
    """Checked whole before it reaches the file system: a 300-character name once raised
    'File name too long' from the path lookup."""
    _create(library, "a")
    with pytest.raises(NotFound, match="no VM named") as err:
        library.find(ref)
    assert err.value.hint
