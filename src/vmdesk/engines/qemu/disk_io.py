"""How each disk's I/O runs on this host: the fastest safe choice QEMU 7.2 offers.

Probed, not assumed (impure; the pure argv builder takes the verdicts):
- ``aio=io_uring`` when this QEMU was built with it and the kernel lets it through (a
  sysctl or a container's seccomp filter may not): QEMU itself is asked, once per boot,
  QEMU binary and sysctl value;
- ``cache.direct=on`` (O_DIRECT: no second copy of the disk in the host's page cache) when
  the disk's file system takes O_DIRECT reads, else the page cache (ramfs, some FUSE and
  network file systems);
- ``aio=native`` only with O_DIRECT (QEMU refuses it otherwise), else ``threads``;
- an L2 table cache that covers a qcow2 disk's whole virtual size (QEMU's default stops at
  32 MiB: 256 GiB of 64 KiB clusters).

A disk's own ``cache``/``aio`` settings override the probes; one the host cannot honour is
an error before anything starts.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from vmdesk.core import paths, processes
from vmdesk.core.config import Disk
from vmdesk.core.errors import EngineError

IO_URING_SYSCTL = Path("/proc/sys/kernel/io_uring_disabled")
_PROBE_TIMEOUT = 10.0
_QCOW2_HEAD = struct.Struct(">4sIQIIQ")  # magic, version, backing off/len, cluster bits, size
_L2_CACHE_MIN = 1 << 20  # QEMU's own default floor


@dataclass(frozen=True)
class DiskIO:
    """The verdict for one disk, as the argv builder uses it and `show` reports it."""

    aio: str  # io_uring | native | threads
    direct: bool  # cache.direct=on (O_DIRECT)
    l2_cache: int | None = None  # bytes of qcow2 L2 table cache; None: QEMU's default
    note: str = ""  # why, when a faster choice was not possible

    def to_json(self) -> dict[str, object]:
        return {"aio": self.aio, "direct": self.direct, "l2_cache": self.l2_cache,
                "note": self.note}  # fmt: skip


def choose(disk: Disk, file: Path, io_uring: bool) -> DiskIO:
    """The verdict for ``disk`` (at ``file``), given whether io_uring is usable here."""
    direct_ok = direct_io_works(file)
    if disk.cache == "auto":
        direct = direct_ok
    else:
        direct = disk.cache in ("none", "directsync")
        if direct and not direct_ok:
            raise EngineError(
                f"{file}'s file system does not take O_DIRECT, which cache={disk.cache} needs",
                hint="set the disk's cache to auto or writeback, or move the VM",
            )
    notes = [] if direct_ok else ["its file system refuses O_DIRECT"]
    aio = _aio(disk, direct, io_uring, notes)
    return DiskIO(aio, direct, l2_cache_for(file, disk.format), "; ".join(notes))


def _aio(disk: Disk, direct: bool, io_uring: bool, notes: list[str]) -> str:
    if disk.aio == "io_uring" and not io_uring:
        raise EngineError(
            "aio=io_uring was asked for a disk, but this host's QEMU or kernel refuses it",
            hint="set the disk's aio to auto (see `vmdesk doctor`)",
        )
    if disk.aio == "native" and not direct:
        raise EngineError(
            "aio=native needs O_DIRECT, which this disk does not get",
            hint="set the disk's aio to auto or threads, or its cache to auto or none",
        )
    if disk.aio != "auto":
        return disk.aio
    if io_uring:
        return "io_uring"
    notes.append("io_uring is not available here")
    return "native" if direct else "threads"


def direct_io_works(file: Path) -> bool:
    """Whether ``file`` can be read with O_DIRECT (an aligned 4 KiB read, as QEMU will)."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:  # macOS has no O_DIRECT (F_NOCACHE instead): QEMU's direct mode is off
        return False
    try:
        fd = os.open(file, os.O_RDONLY | flag | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        with mmap.mmap(-1, 4096) as buffer:  # page-aligned, as O_DIRECT wants
            os.preadv(fd, [buffer], 0)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def l2_cache_for(file: Path, fmt: str) -> int | None:
    """Bytes of L2 table cache that map all of a qcow2 disk (8 bytes per cluster), rounded
    up to a cluster; None for raw disks and for files whose header cannot be read."""
    if fmt != "qcow2":
        return None
    try:
        with open(file, "rb") as image:
            head = image.read(_QCOW2_HEAD.size)
    except OSError:
        return None
    if len(head) < _QCOW2_HEAD.size:
        return None
    magic, _, _, _, cluster_bits, size = _QCOW2_HEAD.unpack(head)
    if magic != b"QFI\xfb" or not 9 <= cluster_bits <= 21:
        return None
    cluster, size = 1 << int(cluster_bits), int(size)
    needed = -(-size // cluster) * 8
    return max(_L2_CACHE_MIN, -(-needed // cluster) * cluster)


def io_uring_sysctl() -> str:
    try:
        return IO_URING_SYSCTL.read_text().strip()
    except OSError:
        return ""


def io_uring_usable(binary: Path) -> bool:
    """Whether ``binary`` can open a file with aio=io_uring on this host now (cached per
    boot, binary and the kernel's io_uring sysctl)."""
    if sys.platform != "linux":
        return False
    cache = paths.cache_dir() / "disk-io" / "io_uring.json"
    key = _cache_key(binary)
    try:
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return bool(saved["usable"])
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    usable = _ask_qemu(binary)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"key": key, "usable": usable}))
    tmp.replace(cache)
    return usable


def _cache_key(binary: Path) -> str:
    try:
        info = binary.stat()
    except OSError:
        return ""
    return f"{processes.boot_id()}/{binary}:{info.st_size}:{info.st_mtime_ns}/{io_uring_sysctl()}"


def _ask_qemu(binary: Path) -> bool:
    import subprocess
    import tempfile

    quit_now = b'{"execute": "qmp_capabilities"}\n{"execute": "quit"}\n'
    with tempfile.NamedTemporaryFile(prefix="vmdesk-io-uring-") as probe:
        probe.write(b"\0" * 4096)
        probe.flush()
        node = f"driver=file,filename={probe.name.replace(',', ',,')},aio=io_uring,node-name=p"
        argv = [str(binary), "-machine", "none", "-nodefaults", "-display", "none",
                "-blockdev", node, "-qmp", "stdio"]  # fmt: skip
        try:
            done = subprocess.run(argv, input=quit_now, capture_output=True,
                                  timeout=_PROBE_TIMEOUT, check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return False
    return done.returncode == 0
