"""Launch plans: starting a VM again without first loading the config model.

Everything the supervisor does before the hypervisor spawns adds to the guest's boot time,
and loading and checking the VM description (pydantic) takes about a fifth of a second.
So after each start the supervisor saves what it ran (the engine's launch spec) together
with everything that spec was derived from; the next start replays the spec at once if
none of that changed, then checks the description in full while the guest boots.

A plan holds only while all of these are unchanged:
- the bytes of config.json, the bundle's path, and the environment that steers paths and
  the accelerator;
- VM-Desk's own code (size and mtime of every module), the host's boot (the KVM probe
  verdict is per boot), whether the kernel allows io_uring, the user's uid and groups
  (who may open /dev/kvm);
- the files in the spec's ``watch`` list (QEMU, the probe cache, /dev/kvm, firmware);
- the isolation verdict's inputs: every path the policy judged still resolves to the same
  place and is still (or still is not) a device.

Standard library only: this runs before the hypervisor spawns.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import sys
from pathlib import Path

from vmdesk.core import processes
from vmdesk.core.host_paths import is_device, joined
from vmdesk.core.layout import Layout

VERSION = 1
_ENVIRONMENT = ("VMDESK_ACCEL", "VMDESK_HOME", "VMDESK_CACHE", "XDG_CACHE_HOME", "HOME", "PATH")
TYPE_CHECKING = False  # not typing's: `typing` stays off the VM start path
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Replayed(Protocol):
        """What an engine's spawner returns: the running hypervisor (and its helpers)."""

        @property
        def pid(self) -> int: ...

        def discard(self) -> None: ...


_REPLAYERS = {"qemu": "vmdesk.engines.qemu.spawn"}  # engines whose launches can be replayed


def key(bundle_dir: Path, config: bytes) -> str:
    """Digest of everything a plan depends on except the watched files and paths."""
    facts = [
        f"v{VERSION}",
        str(bundle_dir),
        sys.platform,
        sys.executable,
        processes.boot_id(),  # not Linux: ""; the probe cache in the watch list covers re-probes
        _io_uring_sysctl(),  # disks' aio=io_uring is chosen by it (engines/qemu/disk_io.py)
        f"{os.getuid()}:{sorted(os.getgroups())}",
        _code_stamp(),
        *(f"{name}={os.environ.get(name, '')}" for name in _ENVIRONMENT),
        *_backing_files(bundle_dir, config),
    ]
    digest = hashlib.sha256("\0".join(facts).encode())
    digest.update(b"\0" + config)
    return digest.hexdigest()


def _backing_files(bundle_dir: Path, config: bytes) -> list[str]:
    """What the disks' headers name below them: a disk rebased onto another file (by hand)
    is judged by the isolation policy again, not replayed (reading a header is cheap)."""
    from vmdesk.storage import qcow2_header

    try:
        disks = json.loads(config).get("disks") or []
        files = [str(d["file"]) for d in disks if d.get("format") == "qcow2"]
    except (ValueError, AttributeError, KeyError, TypeError):
        return ["unreadable"]
    return [f"{file}<-{qcow2_header.backing_chain(Path(joined(file, bundle_dir)))}"
            for file in files]  # fmt: skip


def _io_uring_sysctl() -> str:
    try:
        return Path("/proc/sys/kernel/io_uring_disabled").read_text().strip()
    except OSError:
        return ""


def _code_stamp() -> str:
    package = Path(__file__).resolve().parents[1]
    entries = []
    for directory, subdirs, names in os.walk(package):
        subdirs[:] = [d for d in subdirs if d != "__pycache__"]
        for name in names:
            if name.endswith(".py"):
                info = os.stat(os.path.join(directory, name))
                entries.append(f"{directory}/{name}:{info.st_size}:{info.st_mtime_ns}")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()


def _signature(path: str) -> list[int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_mode, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns]


def load(files: Layout, plan_key: str) -> dict[str, Any] | None:
    """The saved launch spec if the plan still holds, else None."""
    try:
        plan = json.loads(files.launch_plan.read_bytes())
    except (OSError, ValueError):
        return None
    try:
        if plan["key"] != plan_key or plan["spec"]["engine"] not in _REPLAYERS:
            return None
        for path, signature in plan["watch"].items():
            if _signature(path) != signature:
                return None
        for named, real, device in plan["paths"]:
            if os.path.realpath(named) != real or is_device(real) != device:
                return None
        spec: dict[str, Any] = plan["spec"]
    except (KeyError, TypeError, ValueError):
        return None
    return spec


def save(
    files: Layout, plan_key: str, spec: dict[str, Any], paths: list[tuple[str, str, bool]]
) -> None:
    """Remember ``spec`` (just launched, with the isolation ``paths`` it was judged on)."""
    plan = {
        "key": plan_key,
        "spec": spec,
        "watch": {path: _signature(path) for path in spec["watch"]},
        "paths": paths,
    }
    tmp = files.launch_plan.with_suffix(".tmp")
    with contextlib.suppress(OSError):  # only a cache: without it the next start is slower
        tmp.write_text(json.dumps(plan))
        tmp.replace(files.launch_plan)


def forget(files: Layout) -> None:
    with contextlib.suppress(FileNotFoundError):
        files.launch_plan.unlink()


def replay(spec: dict[str, Any]) -> Replayed:
    """Spawn the hypervisor from a saved spec through its engine's stdlib-only spawner."""
    spawner = importlib.import_module(_REPLAYERS[spec["engine"]])
    spawned: Replayed = spawner.spawn(spec)
    return spawned
