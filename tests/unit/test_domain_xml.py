"""Golden tests of the VM-description -> libvirt domain XML builder; libvirt's own schema
(virt-xml-validate) accepts every golden file, and the description comes back out whole."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import golden_files
from vmdesk.core.config import VMConfig, from_dict
from vmdesk.core.errors import EngineError
from vmdesk.engines.libvirt import metadata
from vmdesk.engines.libvirt.domain_xml import Placement, build_domain

GOLDEN = Path(__file__).parent.parent / "golden" / "domain-xml"
UUID = "8a5f3c2e-1111-4e5e-9a0b-123456789abc"
POOL = "/var/lib/libvirt/images/vmdesk"
LINUX = {"kind": "linux", "kernel": "boot/vmlinuz", "initrd": "boot/initrd.img",
         "cmdline": "console=ttyS0 quiet"}  # fmt: skip

CASES: dict[str, tuple[dict[str, Any], str]] = {
    # name: (description, domain type)
    "tiny-linux-x86_64": (
        {
            "arch": "x86_64",
            "boot": LINUX,
            "cpus": 1,
            "memory": "256MiB",
            "nics": [{"mac": "52:54:00:12:34:56"}],
        },
        "qemu",
    ),
    "aarch64-desktop": (
        {
            "arch": "aarch64",
            "cpus": 2,
            "memory": "4GiB",
            "boot": {"kind": "uefi"},
            "disks": [
                {"file": "disks/root.qcow2", "boot_order": 1},
                {"file": "disks/data.img", "format": "raw", "discard": False},
            ],
            "display": {"device": "virtio-gpu", "width": 1920, "height": 1080},
            "shares": [{"tag": "home", "path": "/srv/home & more"}],
            "nics": [{"mac": "52:54:00:aa:bb:cc"}],
        },
        "qemu",
    ),
    "x86_64-headless-server-kvm": (
        {
            "arch": "x86_64",
            "cpus": 4,
            "memory": "2GiB",
            "boot": {"kind": "bios"},
            "disks": [{"file": "disks/root.qcow2", "cache": "writeback", "aio": "threads"}],
            "display": {"device": "none"},
            "input": {"usb_keyboard": False, "usb_tablet": False},
            "clipboard": False,
            "balloon": False,
            "serial": {"enabled": False},
            "nics": [{"mac": "52:54:00:00:00:01"}],
        },
        "kvm",
    ),
    "port-forwards": (
        {
            "arch": "x86_64",
            "boot": LINUX,
            "display": {"device": "none"},
            "nics": [
                {
                    "mac": "52:54:00:12:34:56",
                    "forwards": [
                        {"protocol": "tcp", "host_port": 2222, "guest_port": 22},
                        {
                            "protocol": "udp",
                            "host_address": "0.0.0.0",
                            "host_port": 5353,
                            "guest_port": 53,
                        },
                    ],
                },
                {"mac": "52:54:00:12:34:57"},
            ],
        },
        "qemu",
    ),
    "port-forwards-passt": (
        {
            "arch": "x86_64",
            "boot": LINUX,
            "display": {"device": "none"},
            "nics": [
                {
                    "mac": "52:54:00:12:34:56",
                    "forwards": [
                        {"protocol": "tcp", "host_port": 2222, "guest_port": 22},
                        {
                            "protocol": "tcp",
                            "host_address": "::1",
                            "host_port": 8443,
                            "guest_port": 443,
                        },
                    ],
                }
            ],
        },
        "qemu",
    ),
    "bridged-and-none-nics": (
        {
            "arch": "x86_64",
            "boot": {"kind": "uefi"},
            "disks": [{"file": "disks/root.qcow2"}],
            "nics": [
                {"mode": "bridged", "bridge": "br0", "mac": "52:54:00:00:00:02"},
                {"mode": "none"},
            ],
        },
        "qemu",
    ),
    "x86_64-secure-boot-tpm-cd-install": (
        {
            "arch": "x86_64",
            "cpus": 2,
            "memory": "4GiB",
            "boot": {"kind": "uefi", "secure_boot": True},
            "tpm": True,
            "disks": [{"file": "disks/root.qcow2", "boot_order": 2}],
            "cdroms": [
                {"file": "/srv/iso/installer.iso", "boot_order": 1},
                {"file": "media/drivers.iso"},
            ],
            "nics": [{"mac": "52:54:00:00:00:03", "boot_order": 3}],
        },
        "qemu",
    ),
    "aarch64-many-cpus-usb-virtiofs": (
        {
            "arch": "aarch64",
            "cpus": 12,
            "memory": "8GiB",
            "boot": {"kind": "uefi"},
            "disks": [
                {"file": "disks/root.qcow2"},
                {"file": "disks/stick.img", "format": "raw", "interface": "usb"},
            ],
            "cdroms": [{"file": "media/tools.iso"}],
            "display": {"device": "ramfb"},
            "shares": [
                {"tag": "src", "path": "/srv/src", "mode": "virtiofs"},
                {"tag": "docs", "path": "/srv/docs", "mode": "9p", "read_only": True},
            ],
            "usb_devices": [{"vendor_id": "046d", "product_id": "c52b"}],
            "nics": [{"mac": "52:54:00:00:00:04"}],
        },
        "qemu",
    ),
}


def _config(name: str) -> VMConfig:
    data, _ = CASES[name]
    return from_dict({"name": name, "uuid": UUID, **data})


def _placement(name: str) -> Placement:
    config = _config(name)
    files = [d.file for d in config.disks] + [c.file for c in config.cdroms]
    if config.boot.kind == "linux":
        files += [config.boot.kernel] + ([config.boot.initrd] if config.boot.initrd else [])
    relative = [f for f in files if not f.startswith("/")]
    files = {f: f"{POOL}/{name}-{f.replace('/', '-')}" for f in relative}
    log = f"/var/log/libvirt/qemu/{name}-serial.log"
    return Placement(CASES[name][1], files, passt=name.endswith("-passt"), serial_log=log)


@pytest.mark.parametrize("name", sorted(CASES))
def test_domain_xml_matches_golden_file(name: str) -> None:
    golden_files.check(f"domain-xml/{name}.xml", build_domain(_config(name), _placement(name)))


def test_golden_directory_has_no_stale_files() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.xml")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_libvirts_schema_accepts_the_golden_file(name: str) -> None:
    done = subprocess.run(
        ["virt-xml-validate", str(GOLDEN / f"{name}.xml"), "domain"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_description_comes_back_out_of_the_domain(name: str) -> None:
    config, placement = _config(name), _placement(name)
    stored = metadata.read(build_domain(config, placement))
    assert stored is not None
    assert stored.config == config
    assert stored.files == dict(placement.files)


def test_a_domain_vmdesk_did_not_make_is_not_ours() -> None:
    assert metadata.read("<domain type='kvm'><name>other</name></domain>") is None


def test_what_libvirt_9_cannot_express_is_a_clear_error() -> None:
    linux = {**LINUX, "kernel": "/boot/vmlinuz", "initrd": None}
    cases = {
        "NVMe": {"arch": "x86_64", "boot": linux, "disks": [{"file": "/d.img",
                                                              "interface": "nvme"}]},
        "read-only VirtioFS": {"arch": "x86_64", "boot": linux, "shares": [
            {"tag": "x", "path": "/srv", "mode": "virtiofs", "read_only": True}]},
        "can't run NICs on it": {"arch": "x86_64", "boot": linux, "nics": [
            {"backend": "passt"}]},
        "from an IPv6 address": {"arch": "x86_64", "boot": linux, "nics": [
            {"forwards": [{"host_address": "::1", "host_port": 2222, "guest_port": 22}]}]},
    }  # fmt: skip
    for needle, data in cases.items():
        with pytest.raises(EngineError, match=needle) as caught:
            build_domain(from_dict({"name": "x", **data}), Placement("qemu"))
        assert caught.value.hint


def test_a_bundle_file_without_a_place_on_the_host_is_refused() -> None:
    config = from_dict({"name": "x", "arch": "x86_64", "boot": LINUX})
    with pytest.raises(EngineError, match="no place on the host"):
        build_domain(config, Placement("qemu"))
