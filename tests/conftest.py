"""Shared fixtures: the built tiny guests (built once per run, cached across runs)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vmdesk.core.arch import Arch
from vmdesk.images import tiny_linux

ImageGetter = Callable[[Arch], tiny_linux.TinyImage]


@pytest.fixture(scope="session")
def tiny_image() -> ImageGetter:
    """``tiny_image("aarch64")``: the built image for that arch (built on first use)."""
    built: dict[Arch, tiny_linux.TinyImage] = {}

    def get(arch: Arch) -> tiny_linux.TinyImage:
        if arch not in built:
            built[arch] = tiny_linux.build(arch)
        return built[arch]

    return get
