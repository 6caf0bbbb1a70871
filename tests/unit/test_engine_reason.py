"""Why `engine: auto` picked an engine, as users see it: `vmdesk start`, `vmdesk show`.
(No VM is booted: `start` is checked with the supervisor's start replaced.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vmdesk.cli import fast_start
from vmdesk.engines import registry
from vmdesk.engines.vz.capabilities import VIRTUALIZATION_ENTITLEMENT, HostFacts
from vmdesk.service import library as service_library
from vmdesk.service import vms
from vmdesk.supervisor import client

LINUX = HostFacts("linux", "x86_64")
MAC = HostFacts("darwin", "arm64", (14, 2), frozenset({VIRTUALIZATION_ENTITLEMENT}), pyobjc=True)
ON_LINUX = (
    "auto: the vz engine (Apple Virtualization.framework) runs only on macOS; this host is Linux"
)


def _create(root: Path, name: str, **config: Any) -> None:
    data = {"name": name, "cpus": 1, "memory": "256MiB", **config}
    vms.create(service_library.open(root), data)


def _start(monkeypatch: pytest.MonkeyPatch, vm: str, report: dict[str, Any]) -> list[str]:
    said: list[str] = []
    monkeypatch.setattr(client, "start", lambda bundle, **_: report)
    fast_start.run(vm, wait_ready=False, ready_pattern="x", timeout=1, say=said.append)
    return said


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VMDESK_HOME", str(tmp_path / "library"))
    return tmp_path / "library"


def test_start_prints_the_supervisors_engine_choice(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The choice itself is tested below (describe) and by a real start in tests/vm; here:
    # the start command prints what the supervisor reported, where it belongs.
    _create(root, "a", arch="x86_64")
    chosen = f"qemu ({ON_LINUX})"
    said = _start(monkeypatch, "a", {"ok": True, "accel": "tcg: probed", "engine": chosen})
    assert said[0].startswith("✓ started a in ") and "accelerator tcg: probed" in said[0]
    assert said[1:] == [f"engine: {chosen}"]
    resumed = _start(monkeypatch, "a", {"ok": True, "resumed": True, "engine": chosen})
    assert resumed[0].startswith("✓ resumed a") and resumed[1:] == [f"engine: {chosen}"]
    assert _start(monkeypatch, "a", {"ok": True, "already_running": True}) == [
        "VM a is already running"
    ]


def test_describe_for_each_preference() -> None:
    from vmdesk.core.config import from_dict

    auto = from_dict({"name": "x", "arch": "aarch64"})
    asked = from_dict({"name": "x", "engine": "qemu"})
    vz = from_dict({"name": "x", "engine": "vz", "arch": "aarch64"})
    assert registry.describe(asked, MAC)["text"] == "qemu (the VM asks for QEMU)"
    on_mac = registry.describe(auto, MAC)
    assert (on_mac["name"], on_mac["runs_here"]) == ("vz", True)
    assert on_mac["display"] == {"kind": "window", "command": "vmdesk display x --window"}
    refused = registry.describe(vz, LINUX)
    assert refused["name"] == "vz" and refused["runs_here"] is False
    assert refused["text"].startswith("vz (cannot run here: the vz engine")
    assert "--engine qemu" in refused["hint"]
    assert refused["display"]["kind"] == "window"
    headless = from_dict({"name": "x", "display": {"device": "none"}})
    assert registry.describe(headless, LINUX)["display"] == {"kind": "none", "command": None}
    assert registry.describe(auto, LINUX)["display"] == {"kind": "vnc", "command": None}


def _vmdesk(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "vmdesk.cli.main", *args],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
        env={**os.environ, "VMDESK_HOME": str(root), "COLUMNS": "250"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def test_show_says_which_engine_and_why(root: Path) -> None:
    """The real CLI on this host; what it should say is worked out here for the same host."""
    _vmdesk(root, "create", "dev", "--arch", "x86_64", "--cpus", "1", "--memory", "256MiB")
    _vmdesk(root, "create", "mac", "--engine", "vz", "--arch", "aarch64", "--cpus", "1")
    library = service_library.open(root)
    dev, mac = (registry.describe(library.find(n).load()) for n in ("dev", "mac"))
    shown = _vmdesk(root, "show", "dev").stdout
    assert f"engine   {dev['text']}" in shown
    assert dev["text"].startswith("qemu (")  # an x86_64 guest never runs on vz
    if sys.platform == "linux":
        assert f"engine   qemu ({ON_LINUX})" in shown
    assert "--window" not in shown
    as_json = json.loads(_vmdesk(root, "show", "dev", "--json").stdout)
    assert as_json["engine"]["name"] == "qemu" and as_json["engine"]["reason"] == dev["reason"]
    vz = _vmdesk(root, "show", "mac").stdout
    assert f"engine   {mac['text']}" in vz
    if sys.platform == "linux":
        assert "engine   vz (cannot run here: the vz engine" in vz
    assert "screen   `vmdesk display mac --window` (a native window)" in vz
