"""Guest images: the built-in ones a new VM can boot (``vmdesk create --image``), and the
catalog's cloud images (or any URL with a digest) pulled into the cache."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmdesk.core.errors import ConfigError, Problem

if TYPE_CHECKING:
    from vmdesk.images.catalog import Source
    from vmdesk.images.desktop import DesktopImage

IMAGES = ("tiny-linux",)
# Built here from Debian packages (`vmdesk image build`), then used as a pulled image is: the
# VM's disk is an overlay on it, with a cloud-init seed.
BUILT_DISKS = ("debian-desktop",)

Progress = Callable[[str], None]


def use(image: str, data: dict[str, Any], progress: Progress | None = None) -> dict[str, Path]:
    """Make ``data`` direct-boot ``image``: small defaults, its kernel and initrd copied
    into the bundle. Builds the image on first use. Returns the files for
    :meth:`Library.create` (path inside the bundle -> host file)."""
    from vmdesk.core.arch import default_arch, parse_arch
    from vmdesk.core.errors import VMDeskError
    from vmdesk.images import tiny_linux

    if image not in IMAGES:
        raise ConfigError(
            [Problem("image", f"no built-in image {image!r}", "use one of: " + ", ".join(IMAGES))]
        )
    try:
        arch = parse_arch(str(data.get("arch") or default_arch()))
    except VMDeskError as exc:
        raise ConfigError([Problem("arch", exc.message, exc.hint or "")]) from None
    built = tiny_linux.build(arch, progress=progress)
    data["arch"] = arch
    data.setdefault("cpus", 1)
    data.setdefault("memory", "256MiB")
    kernel, initrd = f"boot/{built.kernel.name}", "boot/initrd.img"
    data["boot"] = {"kind": "linux", "kernel": kernel, "initrd": initrd, "cmdline": built.cmdline()}
    return {kernel: built.kernel, initrd: built.initrd}


# -- built disk images ----------------------------------------------------------------------


def build_desktop(
    arch: str, progress: Progress | None = None, *, force: bool = False
) -> DesktopImage:
    """The desktop image for ``arch``, built first unless it is cached (minutes)."""
    from vmdesk.core.arch import parse_arch
    from vmdesk.images import desktop

    return desktop.build(parse_arch(arch), progress=progress, force=force)


def built_disk(name: str, arch: str) -> Path:
    """The disk of the newest built ``name`` image for ``arch`` (NotFound if none is)."""
    from vmdesk.core.arch import parse_arch
    from vmdesk.images import desktop

    if name not in BUILT_DISKS:
        raise ConfigError(
            [Problem("image", f"no built image {name!r}", "use one of: " + ", ".join(BUILT_DISKS))]
        )
    return desktop.find(parse_arch(arch)).disk


def built() -> list[dict[str, Any]]:
    """Every built image, each architecture's newest: name, arch, kernel, where it is (and
    for a disk image, the disk and its size)."""
    from vmdesk.core.arch import ARCHES
    from vmdesk.core.errors import VMDeskError
    from vmdesk.images import desktop, tiny_linux

    rows: list[dict[str, Any]] = []
    for name, find in (
        (tiny_linux.IMAGE_NAME, tiny_linux.find),
        (desktop.IMAGE_NAME, desktop.find),
    ):
        for arch in ARCHES:
            try:
                image = find(arch)
            except VMDeskError:  # not built for this architecture
                continue
            row: dict[str, Any] = {
                "name": name,
                "arch": arch,
                "kernel_release": image.kernel_release,
                "directory": str(image.directory),
            }
            if isinstance(image, desktop.DesktopImage):
                row |= {"disk": str(image.disk), "size": _size(image.disk)}
            rows.append(row)
    return rows


# -- pulled images: the catalog, URLs with a digest ---------------------------------------

PullProgress = Callable[[int, int | None], None]  # bytes so far, total (None: unknown)
SOURCE_FILE = ".source.json"  # beside a pulled image: where it came from


def catalog(arch: str | None = None) -> list[dict[str, Any]]:
    """Every catalog image (for ``arch``, or every architecture), with whether it is cached,
    where, and its size (the cached file's, else the catalog's, which may be unknown)."""
    from vmdesk.core.arch import parse_arch
    from vmdesk.images import catalog as image_catalog

    wanted = parse_arch(arch) if arch else None
    rows = []
    for entry in image_catalog.entries():
        if wanted is not None and entry.arch != wanted:
            continue
        size = _size(entry.path)
        rows.append(
            {
                "name": entry.name,
                "arch": entry.arch,
                "description": entry.description,
                "format": entry.format,
                "cloud_init": entry.cloud_init,
                "kind": entry.kind,
                "url": entry.url,
                "digest": str(entry.digest),
                "cached": size is not None,
                "path": str(entry.path) if size is not None else None,
                "size": size if size is not None else entry.size,
            }
        )
    return rows


def pulled() -> list[dict[str, Any]]:
    """Images pulled from a URL (not from the catalog), with where they came from."""
    from vmdesk.images import catalog as image_catalog
    from vmdesk.images import downloads

    known = {e.path for e in image_catalog.entries()}
    rows = []
    for directory in sorted(downloads.pulled_dir().glob("*/")):
        source = _source_record(directory)
        path = directory / str(source.get("file", ""))
        if path in known or not source or not path.is_file():
            continue
        rows.append({**source, "path": str(path), "size": path.stat().st_size})
    return rows


def source(ref: str, arch: str | None = None, digest: str | None = None) -> Source:
    """What ``ref`` names (see :func:`pull`), and where its file is or will be; refused
    here, before anything is downloaded, when it cannot be pulled (a URL without a digest)."""
    return _resolve(ref, arch, digest)


def cached(ref: str, arch: str | None = None, digest: str | None = None) -> Path | None:
    """Where ``ref`` already is (a pulled image is complete and checked, a local file is
    where it is); None if it must be pulled."""
    found = _resolve(ref, arch, digest)
    return found.path if found.url is None or found.path.is_file() else None


def pull(
    ref: str,
    arch: str | None = None,
    digest: str | None = None,
    progress: PullProgress | None = None,
) -> Path:
    """The image ``ref`` names (a catalog name, a URL with ``digest``, or a local file),
    downloaded into the cache and checked unless it is there already. Returns its path."""
    from vmdesk.core.atomic import write_text
    from vmdesk.images import downloads

    source = _resolve(ref, arch, digest)
    if source.url is None:  # a local file: used where it is
        if source.digest is not None:
            downloads.verify_file(source.path, source.digest)
        return source.path
    assert source.digest is not None  # resolve() refuses a URL without one
    if source.path.is_file():
        return source.path
    downloads.fetch(source.url, source.path, source.digest, progress=progress)
    record = {
        "name": source.entry.name if source.entry else source.name,
        "arch": source.entry.arch if source.entry else None,
        "url": source.url,
        "digest": str(source.digest),
        "format": source.entry.format if source.entry else None,
        "file": source.path.name,
    }
    write_text(source.path.parent / SOURCE_FILE, json.dumps(record, indent=1) + "\n")
    return source.path


def remove(name: str, arch: str | None = None) -> list[Path]:
    """Delete the cached copies of catalog image ``name`` (of ``arch``, or every
    architecture), or of a URL-pulled image named by its file name or digest."""
    from vmdesk.core.arch import parse_arch
    from vmdesk.core.errors import NotFound
    from vmdesk.images import catalog as image_catalog

    wanted = parse_arch(arch) if arch else None
    if name in image_catalog.names():
        paths = [
            e.path
            for e in image_catalog.entries()
            if e.name == name and (wanted is None or e.arch == wanted)
        ]
    else:
        paths = [Path(p["path"]) for p in pulled() if name in (p["file"], p["digest"])]
    gone = [p for p in paths if p.is_file()]
    if not gone:
        what = f"{name} ({wanted})" if wanted else name
        raise NotFound(f"{what} is not in the image cache", hint="`vmdesk image list` shows it")
    for path in gone:
        path.unlink()
        (path.parent / SOURCE_FILE).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # a pull of it under way keeps its partial file
            path.parent.rmdir()
    return gone


def _resolve(ref: str, arch: str | None, digest: str | None) -> Source:
    from vmdesk.core.arch import parse_arch
    from vmdesk.images import catalog as image_catalog

    return image_catalog.resolve(ref, parse_arch(arch) if arch else None, digest)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _source_record(directory: Path) -> dict[str, Any]:
    try:
        found = json.loads((directory / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}
