"""A VM made in one command from an image served over HTTP: pulled and checked, its disk a
qcow2 overlay on the image (taken into the library's bases) grown to the size asked for, a
cloud-init seed on a CD, and it boots through UEFI from that disk."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ImageGetter
from tests.unit.test_downloads import FileServer
from tests.vm.conftest import CLI
from tests.vm.esp import make_esp
from vmdesk.images import cloud_init

pytestmark = pytest.mark.vm

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f me@host"


def _qcow2_image(tiny_image: ImageGetter, tmp_path: Path) -> bytes:
    """The tiny guest's EFI system partition (its startup.nsh boots the kernel) as the
    qcow2 file a cloud image would be."""
    raw = make_esp(tiny_image("x86_64"), tmp_path / "esp.raw")
    image = tmp_path / "esp.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(raw), str(image)], check=True)
    return image.read_bytes()


def test_create_from_an_image_url_boots_from_an_overlay_with_a_seed(
    cli: CLI, tiny_image: ImageGetter, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cli.env["VMDESK_CACHE"] = str(cache)
    body = _qcow2_image(tiny_image, tmp_path)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    key = tmp_path / "id_ed25519.pub"
    key.write_text(KEY + "\n")
    server = FileServer({"/esp.qcow2": body})
    try:
        url = server.url("/esp.qcow2")
        wrong = cli("create", "bad", "--image", url, "--digest", "sha256:" + "0" * 64, ok=False)
        assert "digest" in wrong and not cli.bundle("bad").exists()
        cli("create", "vm", "--image", url, "--digest", digest, "--arch", "x86_64",
            "--disk-size", "2GiB", "--user", "alice", "--ssh-key", str(key),
            "--cpus", "1", "--memory", "512MiB", "--display", "none", "--no-vnc")  # fmt: skip
    finally:
        server.close()
    shown = json.loads(cli("show", "vm", "--json"))["config"]
    assert shown["boot"]["kind"] == "uefi"
    assert [d["file"] for d in shown["disks"]] == ["disks/disk0.qcow2"]
    assert [c["file"] for c in shown["cdroms"]] == ["cloud-init/seed.iso"]
    disk = json.loads(cli("disk", "list", "vm", "--json"))[0]["image"]
    assert disk["virtual_size"] == 2 << 30 and disk["allocated"] < 1 << 20  # instant, thin
    assert disk["backing_chain"] and ".bases/images/" in disk["backing_chain"][0]

    seed = cloud_init.read_seed(cli.bundle("vm") / "cloud-init" / "seed.iso")
    assert f"instance-id: {shown['uuid']}" in seed.meta_data
    assert "name: alice" in seed.user_data and KEY in seed.user_data
    mac = shown["nics"][0]["mac"]
    assert seed.network_config is not None and mac in seed.network_config

    started = time.monotonic()
    cli("start", "vm", "--wait-ready", "--timeout", "240")  # UEFI -> startup.nsh -> kernel
    took = time.monotonic() - started
    assert "running" in cli("status", "vm"), took
    cli("stop", "vm", "--force")
    # a clone is another cloud-init instance (new host keys, its own name), same user
    cli("clone", "vm", "copy", "--linked")
    copy = json.loads(cli("show", "copy", "--json"))["config"]
    copied = cloud_init.read_seed(cli.bundle("copy") / "cloud-init" / "seed.iso")
    assert (
        f"instance-id: {copy['uuid']}" in copied.meta_data and "hostname: copy" in copied.meta_data
    )
    assert copied.network_config is not None and copy["nics"][0]["mac"] in copied.network_config
    assert copied.user_data == seed.user_data
    # a second VM from the cached image downloads nothing and shares the base
    cli("create", "again", "--image", url, "--digest", digest, "--arch", "x86_64",
        "--disk-size", "64GiB", "--cpus", "1", "--memory", "256MiB")  # fmt: skip
    again = json.loads(cli("disk", "list", "again", "--json"))[0]["image"]
    assert again["virtual_size"] == 64 << 30
    shared = {os.path.realpath(d["backing_chain"][0]) for d in (again, disk)}
    assert len(shared) == 1 and Path(shared.pop()).is_file()
