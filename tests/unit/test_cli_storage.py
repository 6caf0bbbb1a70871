"""`vmdesk disk|cd|boot-order|clone|snapshot` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_cli_vm import Run


@pytest.fixture
def vmdesk(tmp_path: Path) -> Run:
    return Run(tmp_path / "library")


def test_disk_commands(vmdesk: Run, tmp_path: Path) -> None:
    image = tmp_path / "data.qcow2"
    assert "created" in vmdesk("disk", "create", str(image), "--size", "2GiB").stdout
    info = json.loads(vmdesk("disk", "info", str(image), "--json").stdout)
    assert (info["format"], info["virtual_size"]) == ("qcow2", 2 << 30)
    assert "clean" in vmdesk("disk", "check", str(image)).stdout
    vmdesk("create", "vm", "--cpus", "1")
    assert "disks/disk0.qcow2" in vmdesk("disk", "add", "vm", "--size", "4").stdout
    vmdesk("disk", "attach", "vm", str(image), "--read-only")
    listed = json.loads(vmdesk("disk", "list", "vm", "--json").stdout)
    assert [d["image"]["virtual_size"] for d in listed] == [4 << 30, 2 << 30]
    assert listed[1]["read_only"] is True
    assert "0  disks/disk0.qcow2" in vmdesk("disk", "list", "vm").stdout
    vmdesk("disk", "grow", "vm", "0", "6GiB")
    failed = vmdesk("disk", "grow", "vm", "0", "1GiB", ok=False)
    assert "--shrink" in failed.stderr
    failed = vmdesk("disk", "grow", "vm", "0", "1GiB", "--shrink", ok=False)
    assert "--yes" in failed.stderr  # no terminal to ask on
    raw = tmp_path / "data.raw"
    assert "raw" in vmdesk("disk", "convert", str(image), str(raw)).stdout
    vmdesk("disk", "rm", "vm", "1")
    vmdesk("disk", "rm", "vm", "disk0.qcow2", "--delete")
    assert json.loads(vmdesk("disk", "list", "vm", "--json").stdout) == []
    assert image.exists()
    failed = vmdesk("disk", "info", str(tmp_path / "missing.qcow2"), ok=False)
    assert "does not exist" in failed.stderr


def test_cd_and_boot_order_commands(vmdesk: Run, tmp_path: Path) -> None:
    iso = tmp_path / "install.iso"
    iso.write_bytes(b"\0" * 4096)
    vmdesk("create", "vm", "--cpus", "1")
    vmdesk("disk", "add", "vm", "--size", "1")
    assert "boots from it first" in vmdesk("cd", "insert", "vm", str(iso), "--boot").stdout
    cds = json.loads(vmdesk("cd", "list", "vm", "--json").stdout)
    assert cds == [{"index": 0, "file": str(iso), "boot_order": 1}]
    vmdesk("boot-order", "vm", "disk")
    config = json.loads(vmdesk("show", "vm", "--json").stdout)
    assert config["config"]["disks"][0]["boot_order"] == 1
    # network boot only when asked for, and it ends with the next other choice
    assert "network (PXE)" in vmdesk("boot-order", "vm", "net").stdout
    config = json.loads(vmdesk("show", "vm", "--json").stdout)["config"]
    orders = [config["nics"][0]["boot_order"], config["disks"][0]["boot_order"]]
    assert [*orders, config["cdroms"][0]["boot_order"]] == [1, 2, 3]
    vmdesk("boot-order", "vm", "cd")
    config = json.loads(vmdesk("show", "vm", "--json").stdout)["config"]
    assert config["nics"][0]["boot_order"] is None and config["cdroms"][0]["boot_order"] == 1
    assert "ejected" in vmdesk("cd", "eject", "vm").stdout
    assert "no CD-ROM" in vmdesk("cd", "eject", "vm", ok=False).stderr


def test_snapshot_and_clone_commands(vmdesk: Run) -> None:
    vmdesk("create", "vm", "--cpus", "1", "--forward", "tcp:2222:22")
    vmdesk("disk", "add", "vm", "--size", "1")
    vmdesk("snapshot", "create", "vm", "first")
    vmdesk("snapshot", "create", "vm", "second")
    tree = json.loads(vmdesk("snapshot", "list", "vm", "--json").stdout)
    assert [s["name"] for s in tree["snapshots"]] == ["first", "second"]
    vmdesk("snapshot", "revert", "vm", "first")
    shown = vmdesk("snapshot", "list", "vm").stdout
    assert "first" in shown and "<- now" in shown.split("second")[0]
    vmdesk("snapshot", "delete", "vm", "second")
    assert "no snapshot" in vmdesk("snapshot", "revert", "vm", "second", ok=False).stderr
    failed = vmdesk("clone", "vm", "copy", ok=False)
    assert "--no-forwards" in failed.stderr
    assert "clone copy" in vmdesk("clone", "vm", "copy", "--no-forwards").stdout
    vmdesk("snapshot", "delete", "vm", "first")
    out = vmdesk("clone", "vm", "linked", "--linked", "--no-forwards").stdout
    assert "linked clone linked" in out
    names = [vm["name"] for vm in json.loads(vmdesk("list", "--json").stdout)]
    assert names == ["copy", "linked", "vm"]
    vmdesk("delete", "vm", "--yes")
    vmdesk("delete", "linked", "--yes")
    assert "deleted" in vmdesk("delete", "copy", "--yes").stdout
