"""Ways out of an isolated VM through a bundle edited by hand: each start is refused before
anything runs (no QEMU is started), says which field and why, and the VM is left stopped."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.reliability import campaign
from tests.reliability.library_state import Library

Edit = Callable[[Path, Path], dict[str, Any]]  # (bundle, outside file) -> config changes


def _overlay(bundle: Path, outside: Path) -> dict[str, Any]:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(outside), "-F", "raw",
                    str(bundle / "disks/evil.qcow2")], check=True)  # fmt: skip
    return {"disks": [{"file": "disks/evil.qcow2", "format": "qcow2"}]}


def _hard_link(bundle: Path, outside: Path) -> dict[str, Any]:
    os.link(outside, bundle / "disks/linked.raw")
    return {"disks": [{"file": "disks/linked.raw", "format": "raw"}]}


def _symlink(bundle: Path, outside: Path) -> dict[str, Any]:
    (bundle / "disks/sym.raw").symlink_to(outside)
    return {"disks": [{"file": "disks/sym.raw", "format": "raw"}]}


def _dotdot(bundle: Path, outside: Path) -> dict[str, Any]:
    return {"disks": [{"file": f"disks/../../../{outside.name}", "format": "raw"}]}  # to it


def _device(bundle: Path, outside: Path) -> dict[str, Any]:
    return {"disks": [{"file": "/dev/zero", "format": "raw"}], "approved_paths": ["/dev/zero"]}


def _bridged(bundle: Path, outside: Path) -> dict[str, Any]:
    return {"nics": [{"mode": "bridged", "bridge": "br0"}]}


def _usb(bundle: Path, outside: Path) -> dict[str, Any]:
    return {"usb_devices": [{"vendor_id": "046d", "product_id": "c52b"}]}


def _share(bundle: Path, outside: Path) -> dict[str, Any]:
    return {"shares": [{"path": str(outside.parent), "tag": "host"}]}


ESCAPES: dict[str, Edit] = {
    "a qcow2 overlay on an outside file": _overlay, "a hard link to an outside file": _hard_link,
    "a symlink to an outside file": _symlink, "a path through ..": _dotdot,
    "a raw host device": _device, "a bridged NIC": _bridged, "USB passthrough": _usb,
    "a share of an outside folder": _share,
}  # fmt: skip


def _qemus(uuid: str) -> int:
    count = 0
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        count += b"qemu-system" in cmdline and uuid.encode() in cmdline
    return count


def test_every_way_out_of_an_isolated_vm_is_refused_before_it_starts(tmp_path: Path) -> None:
    started = time.monotonic()
    lib = Library(tmp_path / "library", tmp_path / "exports")
    outside = tmp_path / "secret.raw"
    outside.write_bytes(b"secret" * 1024)
    failures: list[str] = []
    for index, (what, edit) in enumerate(ESCAPES.items()):
        name = f"vm{index}"
        lib.vmdesk("create", name, "--boot", "bios", "--disk-size", "16MiB")
        bundle = lib.bundle(name)
        config = json.loads((bundle / "config.json").read_text())
        config.update(edit(bundle, outside))
        (bundle / "config.json").write_text(json.dumps(config))
        done = lib.vmdesk("start", name, check=False)
        status = json.loads(lib.vmdesk("status", name, "--json").stdout)["status"]
        refused = done.returncode != 0 and "isolat" in done.stderr and "hint:" in done.stderr
        if not refused or status != "stopped" or _qemus(config["uuid"]):
            failures.append(f"{what}: exit {done.returncode}, {status}: {done.stderr[-300:]!r}")
            lib.vmdesk("kill", name, check=False)
    assert outside.read_bytes() == b"secret" * 1024
    campaign.Result(test="isolation escapes", operation="a hand-edited bundle's ways out",
                    cases=len(ESCAPES), failures=failures,
                    seconds=time.monotonic() - started).record()  # fmt: skip
    assert not failures, "\n".join(failures)
