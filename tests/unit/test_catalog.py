"""The shipped image catalog is complete and well-formed, and references resolve to a
catalog entry, a URL with a digest, or a local file (or are refused with a hint)."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from vmdesk.core.arch import ARCHES, default_arch
from vmdesk.core.errors import ConfigError, NotFound
from vmdesk.images import catalog
from vmdesk.images.downloads import Digest
from vmdesk.service import images

HEX = "ab" * 32


def _shipped() -> Any:
    return json.loads(resources.files("vmdesk.images").joinpath("catalog.json").read_text())


def test_every_entry_is_https_with_a_digest_for_both_arches_in_a_known_format() -> None:
    data = _shipped()
    assert catalog.check(data) == []
    assert set(data["images"]) == {"ubuntu-24.04", "ubuntu-22.04", "debian-12", "fedora-42"}
    for name, image in data["images"].items():
        assert set(image["arches"]) == set(ARCHES), name
        for arch, one in image["arches"].items():
            assert urlsplit(one["url"]).scheme == "https", (name, arch)
            assert str(Digest.parse(one["digest"])) == one["digest"], (name, arch)
            assert one["format"] in catalog.FORMATS
            assert one["size"] is None  # never guessed: known once pulled
    digests = [e.digest for e in catalog.entries()]
    assert len(set(digests)) == len(digests) == 8
    assert {e.digest.algorithm for e in catalog.entries() if e.name == "debian-12"} == {"sha512"}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["images"]["debian-12"]["arches"].pop("aarch64"), "arches must be exactly"),
        (lambda d: _file(d).update(url="http://example.org/a.img"), "is not an https URL"),
        (lambda d: _file(d).update(digest="md5:00"), "digest: "),
        (lambda d: _file(d).update(digest="sha256:12"), "64 hexadecimal digits"),
        (lambda d: _file(d).update(format="vmdk"), "format must be one of qcow2, raw"),
        (lambda d: _file(d).update(size=-1), "size must be a positive number"),
        (lambda d: d["images"]["debian-12"]["contents"].update(kind="tv"), "contents.kind"),
    ],
)
def test_check_finds_what_is_wrong(change: Any, problem: str) -> None:
    data = copy.deepcopy(_shipped())
    change(data)
    found = catalog.check(data)
    assert len(found) == 1 and found[0].startswith("debian-12: ") and problem in found[0]


def _file(data: Any) -> dict[str, Any]:
    one: dict[str, Any] = data["images"]["debian-12"]["arches"]["x86_64"]
    return one


def test_a_catalog_name_resolves_for_the_host_arch_or_the_one_asked() -> None:
    source = catalog.resolve("debian-12")
    assert source.entry is not None and source.entry.arch == default_arch()
    other = catalog.resolve("fedora-42", "aarch64")
    assert other.entry is not None and other.url == other.entry.url
    assert other.path.name == "Fedora-Cloud-Base-Generic-42-1.1.aarch64.qcow2"
    assert other.path.parent.name == f"sha256-{other.entry.digest.hex}"


def test_urls_need_a_digest_and_https_except_on_loopback() -> None:
    with pytest.raises(ConfigError) as no_digest:
        catalog.resolve("https://example.org/disk.img")
    assert no_digest.value.problems[0].field == "digest" and "--digest" in (
        no_digest.value.hint or ""
    )
    with pytest.raises(ConfigError, match=r"plain http is refused for example\.org"):
        catalog.resolve("http://example.org/disk.img", digest=f"sha256:{HEX}")
    with pytest.raises(ConfigError, match="is not an http"):
        catalog.resolve("ftp://example.org/disk.img", digest=f"sha256:{HEX}")
    with pytest.raises(ConfigError, match="64 hexadecimal digits"):
        catalog.resolve("https://example.org/disk.img", digest="sha256:abc")
    for host in ("127.0.0.1", "localhost", "[::1]"):
        local = catalog.resolve(f"http://{host}:8080/a%20b.qcow2", digest=f"sha256:{HEX.upper()}")
        assert local.path.name == "a_b.qcow2" and str(local.digest) == f"sha256:{HEX}"


def test_a_local_file_is_used_where_it_is(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 4096)
    source = catalog.resolve(str(disk))
    assert source.url is None and source.path == disk
    with pytest.raises(NotFound) as missing:
        catalog.resolve(str(tmp_path / "nope.raw"))
    assert "debian-12" in (missing.value.hint or "")


def test_service_catalog_and_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMDESK_CACHE", str(tmp_path))
    rows = images.catalog("arm64")
    assert len(rows) == 4 and {r["arch"] for r in rows} == {"aarch64"}
    assert all(not r["cached"] and r["path"] is None and r["size"] is None for r in rows)
    # A file at an entry's cache path counts as cached (only fetch() ever puts one there).
    entry = catalog.find("ubuntu-22.04", "x86_64")
    entry.path.parent.mkdir(parents=True)
    entry.path.write_bytes(b"qcow2" * 100)
    [row] = [r for r in images.catalog() if r["cached"]]
    assert (row["name"], row["arch"], row["size"]) == ("ubuntu-22.04", "x86_64", 500)
    assert images.cached("ubuntu-22.04", "amd64") == entry.path
    with pytest.raises(NotFound, match=r"ubuntu-22.04 \(aarch64\) is not in the image cache"):
        images.remove("ubuntu-22.04", "aarch64")
    assert images.remove("ubuntu-22.04") == [entry.path]
    assert not entry.path.parent.exists()
