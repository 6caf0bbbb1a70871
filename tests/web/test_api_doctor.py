"""GET /api/doctor: `vmdesk doctor`'s checks (without the accelerator's probe), ready only
when nothing stops VMs from running; on a PATH without QEMU, what to install."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.web.conftest import LiveServer


def test_a_host_with_qemu_is_ready(api: httpx.Client) -> None:
    found = api.get("/api/doctor").json()
    assert found["ready"] is True, [c for c in found["checks"] if not c["ok"]]
    names = [c["name"] for c in found["checks"]]
    assert "qemu-system-x86_64" in names and "qemu-img" in names
    assert not any(n.startswith("accelerator") for n in names)  # no probe for a page


def test_a_host_without_qemu_is_told_what_to_install(
    library_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    monkeypatch.setenv("PATH", str(bare))
    live = LiveServer(library_root)
    try:
        with live.client() as api:
            found = api.get("/api/doctor").json()
    finally:
        live.close()
    assert found["ready"] is False
    failed = {c["name"]: c for c in found["checks"] if not c["ok"]}
    assert failed["qemu-img"]["fix"] == "sudo apt-get install qemu-utils"
    assert failed["qemu-img"]["severity"] == "error"
    assert "qemu-system-x86" in failed["qemu-system-x86_64"]["fix"]
    assert failed["swtpm"]["severity"] == "warning"  # VMs run without it
