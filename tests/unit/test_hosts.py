"""The hosts registry: names, URIs (never a password), the file written whole, HOST:VM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmdesk.core import hosts
from vmdesk.core.errors import ConfigError, Conflict, NotFound


def test_hosts_are_added_listed_and_removed(tmp_path: Path) -> None:
    assert hosts.load(tmp_path) == []
    hosts.add(tmp_path, "lab", "qemu+ssh://me@lab.example/system")
    hosts.add(tmp_path, "here", "qemu:///session")
    hosts.add(tmp_path, "user", "qemu+unix:///session?socket=/run/user/1000/libvirt/libvirt-sock")
    assert [h.name for h in hosts.load(tmp_path)] == ["lab", "here", "user"]
    assert not hosts.get(tmp_path, "user").remote
    assert hosts.get(tmp_path, "lab").remote and not hosts.get(tmp_path, "here").remote
    with pytest.raises(Conflict, match="exists"):
        hosts.add(tmp_path, "lab", "qemu:///system")
    hosts.remove(tmp_path, "lab")
    assert [h.name for h in hosts.load(tmp_path)] == ["here", "user"]
    with pytest.raises(NotFound, match="no host named 'lab'"):
        hosts.remove(tmp_path, "lab")
    assert not list(tmp_path.glob(".hosts-*"))  # no temporary file left behind
    assert json.loads((tmp_path / hosts.FILE).read_text())["hosts"][0]["name"] == "here"


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("http://lab/system", "QEMU driver only"),
        ("qemu+ssh://me:pw@lab/system", "stores no credentials"),
        ("qemu+ssh://lab/", "names no libvirt daemon"),
        ("qemu+ssh:///system", "names no host"),
        ("qemu+ssh://lab:port/system", "is not a URI"),
        ("xen:///system", "QEMU driver only"),
    ],
)
def test_bad_uris_are_refused_with_a_hint(tmp_path: Path, uri: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as caught:
        hosts.add(tmp_path, "lab", uri)
    assert caught.value.hint
    assert not (tmp_path / hosts.FILE).exists()


@pytest.mark.parametrize("name", ["local", "", "-x", "a b", "x" * 33, "lab:1", "../x"])
def test_bad_host_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="can't name a host"):
        hosts.add(tmp_path, name, "qemu:///system")


def test_a_vm_on_a_host_is_written_host_colon_vm() -> None:
    assert hosts.split("lab:dev") == ("lab", "dev")
    assert hosts.split("dev") == (None, "dev")
    assert hosts.split("local:dev") == (None, "dev")


def test_a_damaged_hosts_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / hosts.FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="can't be read") as caught:
        hosts.load(tmp_path)
    assert caught.value.hint == "fix or remove that file"
