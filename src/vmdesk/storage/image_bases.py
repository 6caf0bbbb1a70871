"""Pulled images as read-only bases in the library, for VMs whose disk is an overlay on one.

A VM made from an image gets a qcow2 overlay in its bundle: instant whatever the disk's
size, and the image is shared by every VM made from it. The image itself is taken into the
library's bases (beside the linked clones' ones, swept the same way once no VM uses it), so
a library moved or copied as a whole keeps working without the download cache; a hard link
to the cached file where both are on one file system, else a copy (a reflink if it can).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from vmdesk.core import paths
from vmdesk.core.library import Library
from vmdesk.storage import clones, copying, images


@contextlib.contextmanager
def base_for(library: Library, image: Path) -> Iterator[tuple[str, images.ImageInfo]]:
    """``image`` (a complete, checked file) as a base of the library. Yields the backing
    name an overlay in a bundle's ``disks/`` uses, and what the base is; the bases' lock is
    held meanwhile, so no sweep removes the base before the VM that uses it exists."""
    with clones.bases_locked(library) as bases:
        # the cache keeps each image under a folder named by its digest: unique per content
        name = f"{image.parent.name[:24]}-{image.name}"
        target = bases / name
        if not target.exists():
            staged = bases / f".{name}.{os.getpid()}.partial"
            staged.unlink(missing_ok=True)
            try:
                os.link(image, staged)
            except OSError:  # another file system: copy it once
                copying.copy(image, staged)
            staged.chmod(0o444)  # a base is never written to
            staged.rename(target)
        yield f"../../{clones.BASES}/images/{name}", images.inspect(target, chain=False)


def raw_of(image: Path) -> Path:
    """``image`` converted to raw, once: kept in the cache (for the vz engine, which reads
    only raw disks), named after the image and its size and time, so a changed image is
    converted again. A raw image is its own raw form."""
    if images.inspect(image, chain=False).format == "raw":
        return image
    facts = os.stat(image)
    key = f"{os.path.realpath(image)}\0{facts.st_size}\0{facts.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    raw = paths.cache_dir() / "images" / "raw" / f"{digest}-{image.stem}.raw"
    if not raw.exists():
        raw.parent.mkdir(parents=True, exist_ok=True)
        images.convert(image, raw, "raw")
    return raw
