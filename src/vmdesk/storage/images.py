"""Disk image files: create, inspect, grow and convert (raw or qcow2), via qemu-img.

Every image appears under its final name whole or not at all: it is written under a
temporary name in the same directory and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from vmdesk.core.errors import Conflict, NotFound, StorageError
from vmdesk.core.units import format_size, human_size
from vmdesk.storage import qemu_img
from vmdesk.storage.qemu_img import Progress

Format = Literal["qcow2", "raw"]
FORMATS: tuple[Format, ...] = ("qcow2", "raw")


@dataclass(frozen=True)
class ImageInfo:
    path: str
    format: str
    virtual_size: int  # bytes the guest sees
    allocated: int  # bytes the file takes on the host
    backing_chain: list[str] = field(default_factory=list)  # nearest first
    snapshots: list[str] = field(default_factory=list)  # internal snapshot names

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        backing = f", backed by {self.backing_chain[0]}" if self.backing_chain else ""
        return (
            f"{self.format}, {human_size(self.virtual_size)} virtual, "
            f"{human_size(self.allocated)} on disk{backing}"
        )


def parse_format(value: str) -> Format:
    for known in FORMATS:
        if value.strip().lower() == known:
            return known
    raise StorageError(f"unknown disk format {value!r}", hint="use qcow2 or raw")


def inspect(path: Path, *, chain: bool = True) -> ImageInfo:
    """What an image is: format, sizes, backing chain and internal snapshots. Without
    ``chain`` only the image itself is opened, and the chain holds just its backing file."""
    if path.is_dir():
        raise NotFound(f"{path} is a folder, not a disk image", hint="name the image file in it")
    if not path.is_file():
        raise NotFound(f"{path} does not exist", hint="check the path")
    if chain:
        layers = qemu_img.info(path, chain=True)
        top, backing = layers[0], [str(layer["filename"]) for layer in layers[1:]]
    else:
        top = qemu_img.info(path)
        backing = [str(top["full-backing-filename"])] if "full-backing-filename" in top else []
    return ImageInfo(
        path=str(path),
        format=str(top["format"]),
        virtual_size=int(top["virtual-size"]),
        allocated=int(top.get("actual-size", 0)),
        backing_chain=backing,
        snapshots=[str(s["name"]) for s in top.get("snapshots", [])],
    )


@contextlib.contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path``; renamed to ``path`` when the block succeeds."""
    if path.exists():
        raise Conflict(f"{path} already exists", hint="choose another file name")
    if not path.parent.is_dir():
        raise NotFound(f"{path.parent} does not exist", hint="create the folder first")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        yield tmp
        if path.exists():  # appeared meanwhile: keep theirs
            raise Conflict(f"{path} appeared meanwhile", hint="choose another file name")
        tmp.replace(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def sweep_partials(path: Path) -> None:
    """Remove what a killed :func:`staged` left beside ``path`` (call it holding the lock
    that guards ``path``, so no live writer's file goes)."""
    for partial in path.parent.glob(f".{path.name}.*.partial"):
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def create(
    path: Path, size: int, fmt: Format = "qcow2", *, backing: Path | None = None
) -> ImageInfo:
    """A new empty (sparse) image of ``size`` bytes, or a qcow2 overlay on ``backing``."""
    if size <= 0:
        raise StorageError("a disk needs a size above zero", hint="for example 20GiB")
    with staged(path) as tmp:
        args = ["create", "-q", "-f", fmt]
        if backing is not None:
            base = inspect(backing)
            # Relative to the overlay, so a library moved as a whole keeps working.
            args += ["-b", os.path.relpath(backing, path.parent), "-F", base.format]
        args += [str(tmp), str(size)]
        qemu_img.run(args, what=f"creating {path}")
    return inspect(path)


def overlay(path: Path, backing_name: str, backing_format: str, size: int) -> None:
    """A qcow2 overlay at ``path`` on a backing file named ``backing_name`` (relative to
    where ``path`` will finally live; the backing file is not opened here, so the overlay
    can be made in a staging directory). Takes milliseconds whatever the size."""
    with staged(path) as tmp:
        args = ["create", "-q", "-f", "qcow2", "-u", "-b", backing_name, "-F", backing_format]
        qemu_img.run([*args, str(tmp), str(size)], what=f"creating {path}")


def grow(path: Path, size: int, *, shrink: bool = False) -> ImageInfo:
    """Change the virtual size; shrinking (which loses what lies past the end) needs
    ``shrink``. qemu-img refuses an image a running VM has open (it is locked)."""
    current = inspect(path)
    if size == current.virtual_size:
        return current
    if size < current.virtual_size and not shrink:
        raise StorageError(
            f"{path} is {format_size(current.virtual_size)}; "
            f"{format_size(size)} would cut off data at its end",
            hint="shrink the filesystem inside the guest first, then pass --shrink",
        )
    if current.snapshots and current.format == "qcow2":
        raise StorageError(
            f"{path} has internal snapshots, and qemu-img cannot resize it then",
            hint="delete the VM's snapshots first (`vmdesk snapshot delete`)",
        )
    args = ["resize", "-q", "-f", current.format, *(["--shrink"] if shrink else [])]
    qemu_img.run([*args, str(path), str(size)], what=f"resizing {path}")
    return inspect(path)


def convert(
    source: Path, target: Path, fmt: Format, *, progress: Progress | None = None
) -> ImageInfo:
    """A copy of ``source`` in format ``fmt`` (standalone: backing files are merged in)."""
    info = inspect(source)
    with staged(target) as tmp:
        args = ["convert", "-f", info.format, "-O", fmt, str(source), str(tmp)]
        qemu_img.run_with_progress(args, what=f"converting {source}", progress=progress)
    return inspect(target)


def verify(path: Path) -> None:
    """Raise StorageError unless ``qemu-img check`` finds the image clean."""
    info = inspect(path)
    result = qemu_img.check(path, info.format)
    bad = {k: result.get(k, 0) for k in ("check-errors", "corruptions", "leaks")}
    if any(bad.values()):
        raise StorageError(
            f"{path} is not clean: " + ", ".join(f"{v} {k}" for k, v in bad.items() if v),
            hint=f"`qemu-img check -r leaks {path}` repairs leaks; keep a copy first",
        )
