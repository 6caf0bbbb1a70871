"""Shared fixtures: the built tiny guests (built once per run, cached across runs), and
host conditions the disks' I/O probes must meet (a file system without O_DIRECT, a kernel
that refuses io_uring)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

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


IO_URING_SYSCTL = Path("/proc/sys/kernel/io_uring_disabled")


@pytest.fixture
def ramfs(tmp_path: Path) -> Iterator[Path]:
    """A file system without O_DIRECT (ramfs has no direct I/O at all)."""
    where = tmp_path / "ramfs"
    where.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "ramfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@contextlib.contextmanager
def io_uring_disabled() -> Iterator[None]:
    """The kernel refuses new io_uring instances (kernel.io_uring_disabled=2) meanwhile."""
    before = IO_URING_SYSCTL.read_text()
    IO_URING_SYSCTL.write_text("2\n")
    try:
        yield
    finally:
        IO_URING_SYSCTL.write_text(before)
