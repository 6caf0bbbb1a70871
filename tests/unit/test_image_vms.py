"""VMs made from an image file, without a guest: the overlay for QEMU, the raw copy for vz
(converted once and kept in the cache), the disk grown to the size asked for."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_cli_vm import Run


@pytest.fixture
def vmdesk(tmp_path: Path) -> Run:
    run = Run(tmp_path / "library")
    run.env["VMDESK_CACHE"] = str(tmp_path / "cache")
    return run


def _image(tmp_path: Path) -> Path:
    image = tmp_path / "cloud.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", str(image)],
                   check=True, capture_output=True)  # fmt: skip
    return image


def test_qemu_gets_an_overlay_and_vz_a_raw_copy_converted_once(vmdesk: Run, tmp_path: Path) -> None:
    image = _image(tmp_path)
    vmdesk("create", "q", "--image", str(image), "--disk-size", "8GiB")
    (overlay,) = json.loads(vmdesk("disk", "list", "q", "--json").stdout)
    assert (overlay["file"], overlay["format"]) == ("disks/disk0.qcow2", "qcow2")
    assert overlay["image"]["virtual_size"] == 8 << 30 and overlay["image"]["backing_chain"]

    for name in ("m1", "m2"):
        vmdesk("create", name, "--image", str(image), "--engine", "vz", "--arch", "aarch64",
               "--disk-size", "1GiB")  # fmt: skip
        (raw,) = json.loads(vmdesk("disk", "list", name, "--json").stdout)
        assert (raw["file"], raw["format"]) == ("disks/disk0.raw", "raw")
        assert raw["image"]["virtual_size"] == 1 << 30 and not raw["image"]["backing_chain"]
        data = (tmp_path / "library" / f"{name}.vmdesk" / "disks" / "disk0.raw").read_bytes()
        assert data[: 1 << 20] == b"\x5a" * (1 << 20)  # the image's data, in raw form
    converted = list((tmp_path / "cache" / "images" / "raw").iterdir())
    assert len(converted) == 1  # converted once, for both VMs
    assert not (tmp_path / "cloud.qcow2.raw").exists()  # nothing beside the user's file


def test_a_seed_for_the_built_in_guest_without_cloud_init_is_refused(tmp_path: Path) -> None:
    from vmdesk.core.errors import ConfigError
    from vmdesk.core.library import Library
    from vmdesk.service import vms

    library = Library(tmp_path)
    with pytest.raises(ConfigError, match="tiny-linux has no cloud-init") as caught:
        vms.create(library, {"name": "t", "arch": "x86_64"}, image="tiny-linux",
                   settings={"user": "bob", "ssh_keys": ["k.pub"]})  # fmt: skip
    assert "--user, --ssh-keys" in str(caught.value) and caught.value.hint
    assert not list(tmp_path.glob("*.vmdesk"))
