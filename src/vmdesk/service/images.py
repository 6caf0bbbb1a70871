"""Built-in guest images a new VM can boot (``vmdesk create --image``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmdesk.core.errors import ConfigError, Problem

IMAGES = ("tiny-linux",)

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
