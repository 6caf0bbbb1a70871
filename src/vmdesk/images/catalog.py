"""The image catalog (catalog.json: pinned cloud images per name and architecture) and what
an image reference names: a catalog name, a URL with its digest, or a local file."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from vmdesk.core.arch import ARCHES, Arch, default_arch
from vmdesk.core.errors import ConfigError, NotFound, Problem, VMDeskError
from vmdesk.images.downloads import Digest, cache_path

Format = Literal["qcow2", "raw"]
Kind = Literal["server", "desktop"]
FORMATS: tuple[Format, ...] = ("qcow2", "raw")
KINDS: tuple[Kind, ...] = ("server", "desktop")
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Entry:
    """One catalog image for one architecture."""

    name: str
    arch: Arch
    url: str
    digest: Digest
    format: Format
    size: int | None  # bytes, when the catalog knows it (it records none it has not seen)
    cloud_init: bool
    kind: Kind
    description: str

    @property
    def path(self) -> Path:
        """Where the image is once pulled (the file there is always complete and checked)."""
        return cache_path(self.digest, file_name(self.url))


@dataclass(frozen=True)
class Source:
    """What a reference resolved to: a catalog entry, a URL with a digest, or a local file
    (``url`` None). ``path`` is where its file is, or will be once pulled."""

    name: str
    url: str | None
    digest: Digest | None
    path: Path
    entry: Entry | None = None


def check(data: Any) -> list[str]:
    """Every problem with catalog data (the shipped file has none: a unit test says so)."""
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        return [f"not a catalog of schema_version {SCHEMA_VERSION}"]
    images = data.get("images")
    if not isinstance(images, dict) or not images:
        return ["no images"]
    problems: list[str] = []
    for name, image in images.items():
        problems += [f"{name}: {p}" for p in _check_image(image)]
    return problems


def _check_image(image: Any) -> list[str]:
    if not isinstance(image, dict):
        return ["not an object"]
    problems = []
    if not isinstance(image.get("description"), str) or not image["description"]:
        problems.append("no description")
    contents = image.get("contents")
    if not isinstance(contents, dict) or not isinstance(contents.get("cloud_init"), bool):
        problems.append("contents.cloud_init must be true or false")
    elif contents.get("kind") not in KINDS:
        problems.append(f"contents.kind must be one of {', '.join(KINDS)}")
    arches = image.get("arches")
    if not isinstance(arches, dict) or set(arches) != set(ARCHES):
        return [*problems, f"arches must be exactly {', '.join(ARCHES)}"]
    for arch, one in arches.items():
        problems += [f"{arch}: {p}" for p in _check_file(one)]
    return problems


def _check_file(one: Any) -> list[str]:
    if not isinstance(one, dict):
        return ["not an object"]
    problems = []
    url = urlsplit(str(one.get("url", "")))
    if url.scheme != "https" or not url.hostname or not file_name(url.geturl()):
        problems.append(f"url {one.get('url')!r} is not an https URL of a file")
    try:
        Digest.parse(str(one.get("digest", "")))
    except ValueError as exc:
        problems.append(f"digest: {exc}")
    if one.get("format") not in FORMATS:
        problems.append(f"format must be one of {', '.join(FORMATS)}")
    size = one.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        problems.append("size must be a positive number of bytes, or null when unknown")
    return problems


@cache
def entries() -> tuple[Entry, ...]:
    """The shipped catalog, every image for every architecture."""
    text = resources.files("vmdesk.images").joinpath("catalog.json").read_text("utf-8")
    data = json.loads(text)
    problems = check(data)
    if problems:  # a packaging mistake, not the user's
        raise VMDeskError(
            "the image catalog shipped with VM-Desk is damaged: " + "; ".join(problems),
            hint="reinstall VM-Desk",
        )
    return tuple(
        Entry(
            name=name,
            arch=arch,
            url=one["url"],
            digest=Digest.parse(one["digest"]),
            format=one["format"],
            size=one["size"],
            cloud_init=image["contents"]["cloud_init"],
            kind=image["contents"]["kind"],
            description=image["description"],
        )
        for name, image in data["images"].items()
        for arch, one in image["arches"].items()
    )


def names() -> list[str]:
    return list(dict.fromkeys(e.name for e in entries()))


def find(name: str, arch: Arch) -> Entry:
    for entry in entries():
        if entry.name == name and entry.arch == arch:
            return entry
    raise NotFound(f"no image {name!r} in the catalog", hint="use one of: " + ", ".join(names()))


def file_name(url: str) -> str:
    """A safe file name for what ``url`` points at (its last path segment)."""
    last = unquote(urlsplit(url).path).rpartition("/")[2]
    return re.sub(r"[^A-Za-z0-9._+-]", "_", last).lstrip(".")


def resolve(ref: str, arch: Arch | None = None, digest: str | None = None) -> Source:
    """What ``ref`` names: a catalog name (for ``arch``, default the host's), a URL (which
    needs ``digest``), or a local file (checked against ``digest`` if one is given)."""
    wanted = _digest(digest) if digest else None
    if "://" in ref:
        return _url_source(ref, wanted)
    if ref in names():
        entry = find(ref, arch or default_arch())
        if wanted is not None and wanted != entry.digest:
            raise _refused(
                "digest",
                f"{ref} has the digest {entry.digest} in the catalog",
                "leave out --digest for a catalog image",
            )
        return Source(f"{entry.name} {entry.arch}", entry.url, entry.digest, entry.path, entry)
    path = Path(ref).expanduser()
    if path.is_file():
        return Source(str(path), None, wanted, path.resolve())
    raise NotFound(
        f"{ref!r} is neither an image in the catalog nor a file",
        hint="use one of: " + ", ".join(names()) + "; or a URL with --digest; or a file path",
    )


def _url_source(url: str, digest: Digest | None) -> Source:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise _refused("url", f"{url!r} is not an http(s) URL", "give an https:// URL")
    if parts.scheme == "http" and not _loopback(host):
        raise _refused(
            "url",
            f"plain http is refused for {host}",
            "use https:// (plain http only for this machine's own mirrors)",
        )
    name = file_name(url)
    if not name:
        raise _refused("url", f"{url!r} names no file", "give the image's URL")
    if digest is None:
        raise _refused(
            "digest",
            f"{url} needs a digest, so that what arrives can be checked",
            "add --digest sha256:HEX (or sha512:HEX), as its publisher gives it",
        )
    return Source(name, url, digest, cache_path(digest, name))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except ValueError as exc:
        raise _refused("digest", str(exc), "give sha256:HEX or sha512:HEX, as published") from None


def _refused(field: str, message: str, hint: str) -> ConfigError:
    """A reference that cannot be pulled: the CLI's exit code 2, HTTP 422."""
    return ConfigError([Problem(field, message, hint)])
