"""`vmdesk clone HOST:VM NEW`: made on the host by its daemon, with a new UUID, new MACs,
its own volumes and a cloud-init seed of its own; it boots, and outlives its source."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.vm.conftest import CLI
from vmdesk.core.library import Library
from vmdesk.images import cloud_init
from vmdesk.service import vms

pytestmark = pytest.mark.vm
SEED = "cloud-init/seed.iso"


def _volumes(prefix: str) -> list[str]:
    done = subprocess.run(["virsh", "-c", "qemu:///system", "vol-list", "vmdesk"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    paths = [line.split()[1] for line in done.stdout.splitlines()[2:] if line.strip()]
    return [p for p in paths if Path(p).name.startswith(f"{prefix}-")]


def test_a_clone_on_a_host_is_its_own_vm_made_there(lab: CLI, vm_name: str,
                                                    tmp_path: Path) -> None:  # fmt: skip
    lab("create", vm_name, "--image", "tiny-linux", "--arch", "x86_64", "--disk-size", "16MiB",
        timeout=300)  # fmt: skip
    seed = lab.bundle(vm_name) / SEED  # a seed as an image's VM has, made by hand here
    seed.parent.mkdir()
    old = cloud_init.SeedFiles("#cloud-config\n", "instance-id: old\nlocal-hostname: old\n",
                               "version: 2\n")  # fmt: skip
    cloud_init.write_files(old, seed)
    vms.edit(Library(lab.home), vm_name, {"cdroms": [{"file": SEED}]})
    lab("move", vm_name, "--to", "lab", timeout=300)
    source, copy = f"lab:{vm_name}", f"{vm_name}-c"
    theirs_volumes = _volumes(vm_name)

    out = lab("clone", source, copy, timeout=120)
    assert f"clone {copy} of {source}" in out and "on host lab" in out, out
    theirs = json.loads(lab("show", source, "--json"))["config"]
    ours = json.loads(lab("show", f"lab:{copy}", "--json"))["config"]
    assert ours["uuid"] != theirs["uuid"]
    assert ours["nics"][0]["mac"] != theirs["nics"][0]["mac"]
    mine = _volumes(copy)
    assert len(mine) == 4 and not set(mine) & set(theirs_volumes), mine

    copied = tmp_path / "seed.iso"  # the clone's seed: its own instance-id and name
    [seed_volume] = [p for p in mine if p.endswith("seed.iso")]
    subprocess.run(["virsh", "-c", "qemu:///system", "vol-download", seed_volume, str(copied)],
                   check=True, capture_output=True)  # fmt: skip
    meta = cloud_init.read_seed(copied).meta_data
    assert ours["uuid"] in meta and copy in meta and "old" not in meta, meta

    lab("start", source)
    out = lab("clone", source, f"{copy}2", ok=False)
    assert "needs a stopped VM" in out and "hint:" in out, out
    lab("stop", source, "--force")
    out = lab("clone", source, f"elsewhere:{copy}2", ok=False)
    assert "vmdesk move" in out, out
    out = lab("clone", source, f"{copy}2", "--linked", ok=False)
    assert "linked clones" in out and "hint:" in out, out
    out = lab("clone", source, copy, ok=False)
    assert "already has a VM named" in out, out
    assert len(_volumes(copy)) == 4

    lab("delete", source, "--yes")  # the clone needs nothing of its source
    out = lab("start", f"lab:{copy}", "--wait-ready", "--timeout", "180", timeout=240)
    assert "VMDESK-READY" in out, out
    lab("stop", f"lab:{copy}", "--force")
