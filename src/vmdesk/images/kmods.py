"""Kernel-module selection: which .ko files a guest needs, in the order to load them.

Pure functions over the text of a ``modules.dep`` file (as written by ``depmod``).
"""

from __future__ import annotations

from collections.abc import Iterable


def module_name(path: str) -> str:
    """``kernel/drivers/gpu/virtio-gpu.ko`` -> ``virtio_gpu`` (the kernel treats - and _ alike)."""
    base = path.rsplit("/", 1)[-1]
    for suffix in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """Map each module path to the paths it depends on."""
    deps: dict[str, list[str]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, _, rest = line.partition(":")
        deps[path.strip()] = rest.split()
    return deps


def load_order(deps: dict[str, list[str]], wanted: Iterable[str]) -> tuple[list[str], list[str]]:
    """The paths to load (dependencies first) for the wanted module names.

    Returns ``(ordered_paths, missing_names)``: names that are no module here are either
    built into the kernel or absent, and the caller decides which.
    """
    by_name = {module_name(path): path for path in deps}
    ordered: list[str] = []
    seen: set[str] = set()
    missing: list[str] = []

    def visit(path: str, stack: tuple[str, ...]) -> None:
        if path in seen:
            return
        if path in stack:  # depmod never writes cycles; guard anyway
            return
        for dep in deps.get(path, []):
            visit(dep, (*stack, path))
        seen.add(path)
        ordered.append(path)

    for name in wanted:
        path = by_name.get(name.replace("-", "_"))
        if path is None:
            missing.append(name)
        else:
            visit(path, ())
    return ordered, missing
