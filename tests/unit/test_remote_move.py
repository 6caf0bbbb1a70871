"""`vmdesk move`'s rules that need no daemon: where a host's files land in a bundle (never
outside it, whatever the host's metadata says), and moves refused before anything is
touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmdesk.core import hosts
from vmdesk.core.config import LinuxBoot, VMConfig
from vmdesk.core.errors import Conflict, NotFound
from vmdesk.core.library import Library
from vmdesk.service import remote_move, vms


def _config(disk: str, kernel: str, initrd: str) -> VMConfig:
    return vms.build({
        "name": "dev", "arch": "x86_64",
        "boot": {"kind": "linux", "kernel": kernel, "initrd": initrd},
        "disks": [{"file": disk}],
    })  # fmt: skip


def test_files_of_a_host_land_inside_the_bundle_and_the_description_follows() -> None:
    config = _config("../../etc/cron.d/x", "/boot/vmlinuz", "boot/initrd.img")
    files = {"../../etc/cron.d/x": "/pool/a", "/boot/vmlinuz": "/pool/b",
             "boot/initrd.img": "/pool/c"}  # fmt: skip
    names = remote_move._local_names(config, files)
    assert names == {"../../etc/cron.d/x": "moved/0-x", "/boot/vmlinuz": "moved/1-vmlinuz",
                     "boot/initrd.img": "boot/initrd.img"}  # fmt: skip
    assert config.disks[0].file == "moved/0-x"
    assert isinstance(config.boot, LinuxBoot)
    assert (config.boot.kernel, config.boot.initrd) == ("moved/1-vmlinuz", "boot/initrd.img")


def test_moves_to_where_the_vm_is_or_to_an_unknown_host_are_refused(tmp_path: Path) -> None:
    library = Library(tmp_path)
    hosts.add(tmp_path, "lab", "qemu:///system")
    with pytest.raises(Conflict, match="on this desk already") as caught:
        remote_move.move(library, "dev", "local")
    assert caught.value.hint
    with pytest.raises(Conflict, match="is on host lab already"):
        remote_move.move(library, "lab:dev", "lab")
    with pytest.raises(NotFound, match="no host named 'far'"):
        remote_move.move(library, "dev", "far")
    with pytest.raises(NotFound):  # no such VM on the desk: nothing is asked of the host
        remote_move.move(library, "dev", "lab")
