"""The VM description: round trips and one clear problem per rule (its fuzzing is in
tests/reliability/test_hostile_descriptions.py)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from vmdesk.core import config as vmconfig
from vmdesk.core.arch import host_arch
from vmdesk.core.config import SCHEMA_VERSION, from_dict, from_json, to_dict, to_json
from vmdesk.core.errors import ConfigError
from vmdesk.core.units import format_size, parse_size

MAXIMAL: dict[str, Any] = {
    "schema_version": SCHEMA_VERSION,
    "name": "everything",
    "uuid": "6f1c1a52-3f0e-4a37-9a3e-0d7d1c5a2b10",
    "engine": "qemu",
    "arch": "x86_64",
    "cpus": 2,
    "memory": "3GiB",
    "boot": {"kind": "uefi", "secure_boot": True},
    "disks": [
        {"file": "disks/root.qcow2", "format": "qcow2", "interface": "virtio-blk",
         "cache": "none", "aio": "native", "discard": True, "iothread": True, "queues": 4,
         "read_only": False, "boot_order": 1},
        {"file": "/srv/data.img", "format": "raw", "interface": "nvme",
         "cache": "writeback", "aio": "threads", "discard": False, "iothread": False,
         "queues": None, "read_only": True, "boot_order": None},
        {"file": "disks/stick.img", "format": "raw", "interface": "usb",
         "cache": "unsafe", "aio": "auto", "discard": True, "iothread": True, "queues": None,
         "read_only": False, "boot_order": None},
    ],
    "cdroms": [{"file": "/isos/installer.iso", "boot_order": 2}],
    "nics": [
        {"mode": "nat", "mac": "52:54:00:12:34:56", "bridge": None,
         "forwards": [{"protocol": "tcp", "host_address": "127.0.0.1", "host_port": 2222,
                       "guest_port": 22},
                      {"protocol": "udp", "host_address": "0.0.0.0", "host_port": 5353,
                       "guest_port": 53}], "boot_order": None, "backend": "slirp"},
        {"mode": "bridged", "mac": "52:54:00:12:34:57", "bridge": "br0", "forwards": [],
         "boot_order": 9, "backend": "auto"},
        {"mode": "none", "mac": "52:54:00:12:34:58", "bridge": None, "forwards": [],
         "boot_order": None, "backend": "auto"},
    ],
    "display": {"device": "ramfb", "width": 1920, "height": 1080, "vnc": False},
    "input": {"usb_keyboard": False, "usb_tablet": True},
    "serial": {"enabled": True, "log": False},
    "shares": [{"tag": "src", "path": "/home/me/src", "read_only": True, "mode": "9p"}],
    "clipboard": False,
    "balloon": False,
    "guest_agent": False,
    "tpm": True,
    "usb_devices": [{"vendor_id": "046d", "product_id": "c52b"}],
    "isolation": "unrestricted",
    "approved_paths": ["/srv", "/isos"],
}  # fmt: skip


def test_maximal_round_trip_is_exact() -> None:
    config = from_dict(MAXIMAL)
    assert to_dict(config) == MAXIMAL
    assert from_json(to_json(config)) == config


def test_minimal_description_gets_sensible_defaults() -> None:
    config = from_dict({"name": "tiny"})
    assert config.arch == (host_arch() or "aarch64") and config.engine == "auto"
    assert config.memory == 2048 and config.cpus == 2
    assert config.boot.kind == "uefi" and config.isolation == "isolated"
    assert [n.mode for n in config.nics] == ["nat"]
    again = from_json(to_json(config))
    assert again == config
    assert isinstance(again.uuid, uuid.UUID)


@pytest.mark.parametrize(
    ("text", "size"),
    [("2GiB", 2 << 30), ("512M", 512 << 20), ("512", 512 << 20), ("1.5G", 1536 << 20),
     ("64mib", 64 << 20), ("1T", 1 << 40), (1024, 1 << 30)],
)  # fmt: skip
def test_human_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size
    assert parse_size(format_size(size)) == size


def _problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as err:
        from_dict({"name": "vm", **data})
    for problem in err.value.problems:
        assert problem.hint, f"no hint for {problem}"
    return [(p.field, p.message) for p in err.value.problems]


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"memory": "32MiB"}, "memory", "below the minimum of 64MiB"),
        ({"memory": "lots"}, "memory", "is not a size"),
        ({"cpus": 0}, "cpus", "greater than or equal to 1"),
        ({"name": "has space"}, "name", "not a valid VM name"),
        ({"arch": "mips"}, "arch", "aarch64"),
        ({"nics": [{"mac": "zz:zz"}]}, "nics[0].mac", "not a MAC address"),
        ({"nics": [{"mac": "01:00:5e:00:00:01"}]}, "nics[0].mac", "multicast"),
        ({"nics": [{"mac": "52:54:00:00:00:01"}, {"mac": "52-54-00-00-00-01"}]},
         "nics[1].mac", "also used by nics[0]"),
        ({"nics": [{"mode": "bridged"}]}, "nics[0].bridge", "needs a host bridge"),
        ({"nics": [{"mode": "none", "forwards": [{"host_port": 80, "guest_port": 80}]}]},
         "nics[0].forwards", "need NAT"),
        ({"nics": [{"forwards": [{"host_port": 80, "guest_port": 80},
                                 {"host_port": 80, "guest_port": 81}]}]},
         "nics[0].forwards", "forwarded twice"),
        ({"nics": [{"forwards": [{"host_port": 70000, "guest_port": 80}]}]},
         "nics[0].forwards[0].host_port", "less than or equal to 65535"),
        ({"nics": [{"forwards": [{"host_address": "localhost", "host_port": 8, "guest_port": 8}]}]},
         "nics[0].forwards[0].host_address", "not an IP address"),
        ({"shares": [{"tag": "t" * 37, "path": "/tmp"}]}, "shares[0].tag", "the limit is 36"),
        ({"shares": [{"tag": "a,b", "path": "/tmp"}]}, "shares[0].tag", "may only contain"),
        ({"shares": [{"tag": "a", "path": "/tmp"}, {"tag": "a", "path": "/srv"}]},
         "shares[1].tag", "used by two shared folders"),
        ({"arch": "x86_64", "boot": {"kind": "bios", "secure_boot": True}},
         "boot.secure_boot", "secure boot needs UEFI"),
        ({"arch": "aarch64", "boot": {"kind": "bios"}}, "boot.kind", "only for x86_64"),
        ({"boot": {"kind": "linux"}}, "boot.kernel", "is required"),
        ({"boot": {"kind": "floppy"}}, "boot", "does not match any of the expected tags"),
        ({"engine": "vz", "arch": "x86_64"}, "engine", "own architecture"),
        ({"usb_devices": [{"vendor_id": "xyz", "product_id": "1"}]},
         "usb_devices[0].vendor_id", "not a 4-digit hex USB id"),
        ({"disks": [{"file": "a", "boot_order": 1}], "cdroms": [{"file": "b", "boot_order": 1}]},
         "cdroms[0].boot_order", "also given to disks[0]"),
        ({"display": {"width": 10}}, "display.width", "greater than or equal to 320"),
        ({"colour": "blue"}, "colour", "not a known field"),
        ({"schema_version": 99}, "schema_version", "newer VM-Desk"),
    ],
)  # fmt: skip
def test_each_rule_names_its_field(data: dict[str, Any], field: str, words: str) -> None:
    problems = _problems(data)
    assert any(f == field and words in m for f, m in problems), problems


def test_several_problems_are_all_reported() -> None:
    problems = _problems({"memory": "1M", "cpus": 0, "nics": [{"mac": "nope"}]})
    assert {f for f, _ in problems} == {"memory", "cpus", "nics[0].mac"}


def test_mac_is_normalised() -> None:
    config = from_dict({"name": "vm", "nics": [{"mac": "52-54-00-AB-CD-EF"}]})
    assert config.nics[0].mac == "52:54:00:ab:cd:ef"


def test_older_schema_is_migrated() -> None:
    config = from_dict({"name": "old"})  # schema 0: written before the field existed
    assert config.schema_version == SCHEMA_VERSION
    assert vmconfig.migrate({"name": "x", "schema_version": 0})["schema_version"] == 1


def test_json_schema_describes_the_model() -> None:
    schema = vmconfig.json_schema()
    assert schema["title"] == "VMConfig"
    for key in ("memory", "boot", "disks", "nics", "shares", "isolation", "schema_version"):
        assert key in schema["properties"]
    json.dumps(schema)


def test_invalid_json_text() -> None:
    with pytest.raises(ConfigError, match="not valid JSON"):
        from_json("{nope")
