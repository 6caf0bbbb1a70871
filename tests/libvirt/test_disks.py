"""A new disk for a VM on a host is made in the host's pool by its daemon: listed, seen by
the guest at its size, refused while the VM runs, and removed with the VM."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.libvirt.test_move import _type_in_console
from tests.vm.conftest import CLI

pytestmark = pytest.mark.vm


def _volumes(prefix: str) -> list[str]:
    done = subprocess.run(["virsh", "-c", "qemu:///system", "vol-list", "vmdesk"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    names = [line.split()[0] for line in done.stdout.splitlines()[2:] if line.strip()]
    return [n for n in names if n.startswith(f"{prefix}-")]


def test_a_disk_added_to_a_vm_on_a_host_is_made_in_its_pool(lab: CLI, vm_name: str) -> None:
    lab("create", vm_name, "--host", "lab", "--image", "tiny-linux", "--arch", "x86_64",
        timeout=300)  # fmt: skip
    ref = f"lab:{vm_name}"
    out = lab("disk", "add", ref, "--size", "1GiB")
    assert "added disks/disk0.qcow2" in out and "1 GiB virtual" in out, out
    [row] = json.loads(lab("disk", "list", ref, "--json"))
    assert row["format"] == "qcow2" and row["image"]["virtual_size"] == 1 << 30, row
    assert row["path"].startswith("/var/lib/libvirt/images/vmdesk/"), row
    assert len(_volumes(vm_name)) == 3  # kernel, initrd and the new disk

    lab("start", ref, "--wait-ready", "--timeout", "180", timeout=240)
    _type_in_console(lab, ref, "echo sectors-$(cat /sys/block/vda/size)", b"sectors-2097152")
    out = lab("disk", "add", ref, "--size", "1GiB", ok=False)
    assert "is running on host lab" in out and "hint:" in out, out
    assert len(_volumes(vm_name)) == 3
    lab("stop", ref, "--force")
    lab("delete", ref, "--yes")
    assert not _volumes(vm_name)
