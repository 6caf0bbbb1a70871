"""Live migration's plan and the destination's domain XML, from a domain the builder makes:
writable disks copied by QEMU, read-only files before, every path and the metadata
rewritten for the destination, the serial log where it logs."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from vmdesk.core.config import VMConfig
from vmdesk.engines.libvirt import metadata, migration
from vmdesk.engines.libvirt.domain_xml import Placement, build_domain
from vmdesk.service import vms

SRC = "/var/lib/libvirt/images/vmdesk"
DST = "/home/u/pool"


def _domain() -> tuple[str, VMConfig]:
    config = vms.build({
        "name": "dev", "arch": "x86_64",
        "boot": {"kind": "linux", "kernel": "boot/vmlinux", "initrd": "boot/initrd.img"},
        "disks": [{"file": "disks/disk0.qcow2", "format": "qcow2"}],
        "cdroms": [{"file": "cloud-init/seed.iso"}],
    })  # fmt: skip
    files = {
        name: f"{SRC}/dev-{name.replace('/', '-')}"
        for name in ("boot/vmlinux", "boot/initrd.img", "disks/disk0.qcow2", "cloud-init/seed.iso")
    }
    placement = Placement("qemu", files, serial_log="/var/log/libvirt/qemu/dev-serial.log")
    return build_domain(config, placement), config


def test_writable_disks_are_copied_by_qemu_and_the_rest_before() -> None:
    xml, _ = _domain()
    steps = migration.plan(xml)
    assert steps.disks == {f"{SRC}/dev-disks-disk0.qcow2": "vda"}
    assert sorted(steps.files) == [f"{SRC}/dev-boot-initrd.img", f"{SRC}/dev-boot-vmlinux",
                                   f"{SRC}/dev-cloud-init-seed.iso"]  # fmt: skip


def test_the_destination_xml_names_only_the_destinations_paths() -> None:
    xml, config = _domain()
    steps = migration.plan(xml)
    paths = {p: p.replace(SRC, DST) for p in [*steps.disks, *steps.files]}
    stored = metadata.read(xml)
    assert stored is not None
    files = {name: path.replace(SRC, DST) for name, path in stored.files.items()}
    out = migration.destination_xml(xml, paths, None, config, files)
    assert SRC not in out
    root = ET.fromstring(out)
    assert root.findtext("os/kernel") == f"{DST}/dev-boot-vmlinux"
    assert root.find("devices/serial/log") is None  # the destination logs nowhere known
    moved = metadata.read(out)
    assert moved is not None and moved.files == files and moved.config == config
    logged = migration.destination_xml(xml, paths, "/l/dev.log", config, files)
    log = ET.fromstring(logged).find("devices/serial/log")
    assert log is not None and log.get("file") == "/l/dev.log"
