"""The vz engine against the real Virtualization.framework (macOS only; skipped elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_vz_translate import CASES
from vmdesk.core.config import from_dict
from vmdesk.core.errors import EngineError
from vmdesk.engines.vz import api_surface, macos
from vmdesk.engines.vz.capabilities import NETWORKING_ENTITLEMENT, current_host
from vmdesk.engines.vz.translate import Inputs, translate


def test_every_listed_name_exists_on_this_macos() -> None:
    fw = macos.load().fw
    host = current_host()
    assert host.macos is not None
    for name in [*api_surface.SURFACE, *api_surface.STATES]:
        if api_surface.since(name) > host.macos:
            continue
        owner, _, selector = name.partition(".")
        target = getattr(fw, owner)
        if selector:
            assert hasattr(target, selector), name


def test_state_values_match() -> None:
    fw = macos.load().fw
    for name, (value, _) in api_surface.STATES.items():
        if hasattr(fw, name):
            assert getattr(fw, name) == value, name


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_vms_translate_and_validate(name: str, tmp_path: Path) -> None:
    """Real objects; validation may only fail on the fake paths (files that do not exist)."""
    host = current_host()
    if "bridged" in name and NETWORKING_ENTITLEMENT not in host.entitlements:
        pytest.skip(f"needs the {NETWORKING_ENTITLEMENT} entitlement")
    description = dict(CASES[name])
    if not host.nvme:
        for disk in description.get("disks", []):
            disk["interface"] = "virtio-blk"
    config = from_dict({"name": "example", "engine": "vz", **description})
    (tmp_path / "nvram").mkdir()
    try:
        translate(config, tmp_path, macos.load().fw, host, Inputs())
    except EngineError as exc:
        assert "refused the VM's configuration" in exc.message or "cannot be used" in exc.message
