"""/api/vms/{name} says which engine runs the VM and why, and where its screen is shown
(the console page reads it to send a vz VM's user to the native window). No VM is started."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from vmdesk.engines.vz import capabilities as vz_caps
from vmdesk.engines.vz.capabilities import VIRTUALIZATION_ENTITLEMENT, HostFacts

LINUX = HostFacts("linux", "x86_64")
MAC = HostFacts("darwin", "arm64", (14, 2), frozenset({VIRTUALIZATION_ENTITLEMENT}), pyobjc=True)


def _create(api: httpx.Client, name: str, **config: Any) -> None:
    body = {"config": {"name": name, "cpus": 1, "memory": "256MiB", **config}}
    response = api.post("/api/vms", json=body)
    assert response.status_code == 201, response.text


def test_engine_reason_and_screen_on_linux(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vz_caps, "current_host", lambda: LINUX)
    _create(api, "pc", arch="x86_64")
    _create(api, "headless", arch="x86_64", display={"device": "none"})
    _create(api, "mac", engine="vz", arch="aarch64")

    pc = api.get("/api/vms/pc").json()["engine"]
    assert pc == {
        "name": "qemu",
        "reason": "auto: the vz engine (Apple Virtualization.framework) runs only on macOS; "
        "this host is Linux",
        "hint": None,
        "runs_here": True,
        "text": "qemu (auto: the vz engine (Apple Virtualization.framework) runs only on "
        "macOS; this host is Linux)",
        "display": {"kind": "vnc", "command": None},
    }
    assert api.get("/api/vms/headless").json()["engine"]["display"]["kind"] == "none"

    mac = api.get("/api/vms/mac").json()["engine"]
    assert mac["name"] == "vz" and mac["runs_here"] is False
    assert "runs only on macOS" in mac["reason"] and "--engine qemu" in mac["hint"]
    assert mac["display"] == {"kind": "window", "command": "vmdesk display mac --window"}


def test_auto_on_a_mac_names_vz_and_its_native_window(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vz_caps, "current_host", lambda: MAC)
    _create(api, "arm", arch="aarch64")
    _create(api, "tpm", arch="aarch64", tpm=True)

    arm = api.get("/api/vms/arm").json()
    assert arm["engine"]["name"] == "vz" and arm["engine"]["runs_here"] is True
    assert arm["engine"]["reason"] == "auto: macOS 14.2 on Apple silicon runs all of this VM on vz"
    assert arm["engine"]["display"]["command"] == "vmdesk display arm --window"
    assert arm["capabilities"]["engine"] == "vz" and arm["capabilities"]["vnc"] is False

    tpm = api.get("/api/vms/tpm").json()["engine"]
    assert tpm["text"] == "qemu (auto: the vz engine does not support TPM)"
    assert tpm["display"]["kind"] == "vnc"
