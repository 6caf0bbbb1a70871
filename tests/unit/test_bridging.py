"""Bridged NICs: who makes the tap, and the errors when nobody may."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmdesk.core.config import Nic
from vmdesk.core.errors import PolicyViolation
from vmdesk.networking import bridges


@pytest.fixture
def sys_net(tmp_path: Path) -> Path:
    """A fake /sys/class/net with a bridge br0 and a plain interface eth0."""
    (tmp_path / "br0" / "bridge").mkdir(parents=True)
    (tmp_path / "eth0").mkdir()
    return tmp_path


def _nics(*names: str) -> list[Nic]:
    return [Nic(mode="nat"), *(Nic(mode="bridged", bridge=b) for b in names)]


def test_with_net_admin_vm_desk_makes_the_taps(sys_net: Path) -> None:
    assert bridges.plan("vm", _nics("br0"), net_admin=True, sys_net=sys_net) == ([1], None)


def test_without_net_admin_a_setuid_helper_is_used(sys_net: Path, tmp_path: Path) -> None:
    helper = tmp_path / "qemu-bridge-helper"
    got = bridges.plan("vm", _nics("br0"), net_admin=False, helper=helper, sys_net=sys_net)
    assert got == ([], helper)


def test_without_any_privilege_the_error_names_it(
    sys_net: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bridges, "setuid_helper", lambda: None)
    with pytest.raises(PolicyViolation) as err:
        bridges.plan("vm", _nics("br0"), net_admin=False, sys_net=sys_net)
    assert "CAP_NET_ADMIN" in err.value.message
    assert "chmod u+s" in str(err.value.hint) and "allow br0" in str(err.value.hint)


@pytest.mark.parametrize(
    ("bridge", "said"), [("br9", "no network interface named"), ("eth0", "not a Linux bridge")]
)
def test_a_missing_bridge_or_a_plain_interface_is_refused(
    sys_net: Path, bridge: str, said: str
) -> None:
    with pytest.raises(PolicyViolation, match=said):
        bridges.plan("vm", _nics(bridge), net_admin=True, sys_net=sys_net)


def test_no_bridged_nics_needs_nothing(tmp_path: Path) -> None:
    assert bridges.plan("vm", _nics(), net_admin=False, sys_net=tmp_path) == ([], None)


def test_net_admin_is_read_from_the_effective_capabilities(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000001000\n")
    assert bridges.has_net_admin(status)
    status.write_text("Name:\tx\nCapEff:\t0000000000000000\n")
    assert not bridges.has_net_admin(status)
    assert not bridges.has_net_admin(tmp_path / "missing")
