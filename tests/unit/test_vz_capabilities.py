"""Engine choice and the vz engine's capabilities, with the host's facts injected."""

from __future__ import annotations

from typing import Any

import pytest

from vmdesk.core.config import from_dict
from vmdesk.core.errors import EngineError
from vmdesk.engines import registry
from vmdesk.engines.vz.capabilities import (
    NETWORKING_ENTITLEMENT,
    VIRTUALIZATION_ENTITLEMENT,
    HostFacts,
    capabilities,
    current_host,
)

ENTITLED = frozenset({VIRTUALIZATION_ENTITLEMENT})
MAC14 = HostFacts("darwin", "arm64", (14, 2), ENTITLED, pyobjc=True)
MAC13 = HostFacts("darwin", "arm64", (13, 6), ENTITLED, pyobjc=True)
LINUX = HostFacts("linux", "x86_64")
PLAIN = {"name": "box", "arch": "aarch64", "boot": {"kind": "uefi"},
         "disks": [{"file": "disks/root.img", "format": "raw"}],
         "nics": [{"mac": "52:54:00:00:00:01"}]}  # fmt: skip


def config(**changes: Any) -> Any:
    return from_dict({**PLAIN, **changes})


def test_auto_picks_vz_on_a_capable_mac() -> None:
    choice = registry.choose(config(), MAC14)
    assert choice == registry.Choice(
        "vz", "auto: macOS 14.2 on Apple silicon runs all of this VM on vz"
    )
    engine = registry.engine_for(config(), MAC14)
    assert engine.name == "vz" and engine.capabilities().engine == "vz"


@pytest.mark.parametrize(
    ("changes", "feature"),
    [
        ({"tpm": True}, "TPM"),
        ({"usb_devices": [{"vendor_id": "046d", "product_id": "c52b"}]}, "USB passthrough"),
        ({"nics": [{"mac": "52:54:00:00:00:01",
                    "forwards": [{"host_port": 2222, "guest_port": 22}]}]},
         "port forwarding"),
        ({"disks": [{"file": "disks/root.qcow2"}]}, "qcow2 disks"),
        ({"boot": {"kind": "uefi", "secure_boot": True}}, "secure boot"),
        ({"arch": "x86_64"}, "x86_64 guests"),
        ({"shares": [{"tag": "src", "path": "/Users/me/src", "mode": "9p"}]}, "9p shared"),
        ({"display": {"device": "ramfb"}}, "ramfb"),
        ({"nics": [{"mac": "52:54:00:00:00:01", "boot_order": 1}]}, "network"),
    ],
)  # fmt: skip
def test_a_feature_vz_lacks_picks_qemu_and_refuses_vz(
    changes: dict[str, Any], feature: str
) -> None:
    choice = registry.choose(config(**changes), MAC14)
    assert choice.engine == "qemu" and feature in choice.reason
    if "arch" in changes:
        return  # the description itself refuses engine vz for x86_64 guests
    with pytest.raises(EngineError, match=f"does not support .*{feature}") as err:
        registry.choose(config(engine="vz", **changes), MAC14)
    assert "--engine qemu" in str(err.value.hint)


def test_nvme_only_from_macos_14() -> None:
    nvme = {"disks": [{"file": "disks/root.img", "format": "raw", "interface": "nvme"}]}
    assert registry.choose(config(**nvme), MAC14).engine == "vz"
    assert "NVMe" in registry.choose(config(**nvme), MAC13).reason


def test_bridged_needs_unrestricted_and_the_networking_entitlement() -> None:
    bridged = {"nics": [{"mode": "bridged", "bridge": "en0", "mac": "52:54:00:00:00:01"}]}
    assert "unrestricted" in registry.choose(config(**bridged), MAC14).reason
    open_vm = config(isolation="unrestricted", **bridged)
    assert NETWORKING_ENTITLEMENT in registry.choose(open_vm, MAC14).reason
    rich = HostFacts("darwin", "arm64", (14, 0), ENTITLED | {NETWORKING_ENTITLEMENT}, True)
    assert registry.choose(open_vm, rich).engine == "vz"


@pytest.mark.parametrize(
    ("host", "why"),
    [
        (LINUX, "runs only on macOS"),
        (HostFacts("darwin", "x86_64", (14, 0), ENTITLED, True), "Apple silicon"),
        (HostFacts("darwin", "arm64", (12, 7), ENTITLED, True), "needs macOS 13 or later"),
        (HostFacts("darwin", "arm64", (14, 0), ENTITLED, False), "vmdesk[macos]"),
        (HostFacts("darwin", "arm64", (14, 0), frozenset(), True), VIRTUALIZATION_ENTITLEMENT),
    ],
)
def test_hosts_that_cannot_run_vz(host: HostFacts, why: str) -> None:
    choice = registry.choose(config(), host)
    assert choice.engine == "qemu" and why in choice.reason
    with pytest.raises(EngineError, match=why.replace("[", r"\[").replace("]", r"\]")):
        registry.choose(config(engine="vz"), host)


def test_qemu_when_asked() -> None:
    assert registry.choose(config(engine="qemu"), MAC14).engine == "qemu"


def test_this_linux_host_runs_qemu() -> None:
    engine = registry.engine_for(config())
    assert engine.name == "qemu"
    assert "runs only on macOS" in engine.reason  # type: ignore[attr-defined]
    assert current_host().system != "darwin"


def test_capabilities_as_data() -> None:
    caps = capabilities(MAC14)
    assert caps.engine == "vz" and caps.arches == ("aarch64",)
    assert not caps.usb_passthrough and not caps.vnc and not caps.screenshot
    assert not caps.reboot and not caps.snapshots_with_ram
    assert caps.share_kinds == ("virtiofs",)
    assert not caps.tpm and not caps.port_forwards
    assert caps.save_state and not capabilities(MAC13).save_state
    # The optional features: a native window, the SPICE agent's clipboard (macOS serves it)
    # and the guest agent, whose channel the session relays to the agent's socket.
    assert caps.window and caps.clipboard and caps.guest_agent and caps.agent_sockets
    qemu = registry.engine_for(config(engine="qemu"), MAC14).capabilities()
    assert qemu.tpm and qemu.port_forwards and qemu.save_state
    assert not qemu.window  # its screen is served over VNC
    assert MAC14.save_restore and not MAC13.save_restore
    assert not HostFacts("darwin", "x86_64", (14, 0)).save_restore
