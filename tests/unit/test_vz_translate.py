"""The VZ translation against the recording fake: golden object graphs and clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests import golden_files
from vmdesk.core.config import from_dict
from vmdesk.core.errors import EngineError
from vmdesk.engines.vz import fake
from vmdesk.engines.vz.capabilities import NETWORKING_ENTITLEMENT, HostFacts
from vmdesk.engines.vz.translate import Inputs, Translation, translate

BUNDLE = Path("/vms/example.vmdesk")
MAC = "52:54:00:aa:bb:cc"
HOST = HostFacts(
    "darwin", "arm64", (14, 0),
    frozenset({"com.apple.security.virtualization", "com.apple.vm.networking"}),
)  # fmt: skip
LINUX = {"kind": "linux", "kernel": "boot/vmlinuz", "initrd": "boot/initrd.img",
         "cmdline": "console=hvc0 quiet"}  # fmt: skip

CASES: dict[str, dict[str, Any]] = {
    "minimal-linux": {
        "boot": LINUX,
        "cpus": 1,
        "memory": "256MiB",
        "clipboard": False,
        "guest_agent": False,  # no console ports at all
        "display": {"device": "none"},
        "input": {"usb_keyboard": False, "usb_tablet": False},
        "nics": [{"mac": MAC}],
    },
    "desktop": {
        "cpus": 4,
        "memory": "4GiB",
        "boot": {"kind": "uefi"},
        "disks": [
            {"file": "disks/root.img", "format": "raw"},
            {
                "file": "/Volumes/data/scratch.img",
                "format": "raw",
                "cache": "unsafe",
                "interface": "nvme",
            },
        ],
        "display": {"device": "virtio-gpu", "width": 1920, "height": 1080},
        "shares": [
            {"tag": "home", "path": "/Users/me/My Files"},
            {"tag": "docs", "path": "/Users/me/Documents", "read_only": True},
        ],
        "nics": [{"mac": MAC}],
    },
    "bridged-usb-headless": {
        "boot": LINUX,
        "isolation": "unrestricted",
        "serial": {"enabled": False},
        "disks": [
            {
                "file": "disks/data.img",
                "format": "raw",
                "interface": "usb",
                "read_only": True,
                "cache": "writethrough",
            }
        ],
        "display": {"device": "none"},
        "input": {"usb_keyboard": True, "usb_tablet": False},
        "nics": [{"mode": "bridged", "bridge": "en1", "mac": MAC}],
    },
    "uefi-installer": {
        "cpus": 2,
        "memory": "2GiB",
        "boot": {"kind": "uefi"},
        "disks": [{"file": "disks/root.img", "format": "raw", "cache": "none"}],
        "cdroms": [{"file": "/Users/me/Downloads/debian-12-arm64.iso", "boot_order": 1}],
        "nics": [{"mac": MAC}, {"mode": "none"}],
        "clipboard": False,
    },
}


def build(
    description: dict[str, Any],
    fw: fake.FakeFramework | None = None,
    host: HostFacts = HOST,
    inputs: Inputs | None = None,
) -> tuple[Translation, fake.FakeFramework]:
    fw = fw or fake.FakeFramework(interfaces=("en0", "en1"))
    config = from_dict({"name": "example", "engine": "vz", "arch": "aarch64", **description})
    serial = (10, 11) if config.serial.enabled else None
    agent = 12 if config.guest_agent else None  # the session's socket pair, guest end
    inputs = inputs or Inputs(
        serial_fds=serial, guest_agent_fd=agent, machine_identifier=b"fake-machine-id-1"
    )
    return translate(config, BUNDLE, fw, host, inputs), fw


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_object_graph(name: str) -> None:
    result, _ = build(CASES[name])
    text = "\n".join(fake.render(result.configuration)) + "\n"
    golden_files.check(f"vz/{name}.txt", text)
    assert result.notes == []


def test_every_case_validates_and_uses_only_listed_names() -> None:
    for description in CASES.values():
        result, fw = build(description)
        assert ("validateWithError_", ()) in result.configuration.fake_calls
        assert fw.used  # the fake refused anything not on the list


def test_machine_identifier_created_once_then_reused() -> None:
    first, _ = build(CASES["minimal-linux"], inputs=Inputs(machine_identifier=None))
    assert first.machine_identifier == b"fake-machine-identifier"
    again, _ = build(CASES["minimal-linux"], inputs=Inputs(machine_identifier=b"fake-kept"))
    assert again.machine_identifier == b"fake-kept"
    # data the framework cannot read: a new identifier, not a failure
    bad, _ = build(CASES["minimal-linux"], inputs=Inputs(machine_identifier=b"garbage"))
    assert bad.machine_identifier == b"fake-machine-identifier"


def test_efi_store_created_on_first_start_and_opened_later() -> None:
    fresh, _ = build(CASES["uefi-installer"], inputs=Inputs(nvram_exists=False))
    loader = fresh.configuration.fake_setting("setBootLoader_")
    store = loader.fake_setting("setVariableStore_")
    assert store._ctor[0] == "initCreatingVariableStoreAtURL_options_error_"
    assert store._ctor[1][0]._ctor[1] == ("/vms/example.vmdesk/nvram/vz-efivars.fd",)
    kept, _ = build(CASES["uefi-installer"], inputs=Inputs(nvram_exists=True))
    store = kept.configuration.fake_setting("setBootLoader_").fake_setting("setVariableStore_")
    assert store._ctor[0] == "initWithURL_"


def test_cpus_and_memory_clamped_to_the_framework_limits() -> None:
    fw = fake.FakeFramework(cpus=(1, 4), memory=(512 << 20, 8 << 30))
    result, _ = build({**CASES["minimal-linux"], "cpus": 16, "memory": "128MiB"}, fw)
    assert result.configuration.fake_setting("setCPUCount_") == 4
    assert result.configuration.fake_setting("setMemorySize_") == 512 << 20
    assert [n.split(":")[0] for n in result.notes] == ["cpus", "memory"]


def test_validation_message_is_surfaced() -> None:
    fw = fake.FakeFramework()
    fw.validation_error = "The number of CPUs is invalid."
    with pytest.raises(EngineError, match="refused the VM's configuration: The number of CPUs"):
        build(CASES["minimal-linux"], fw)


def test_qcow2_disk_gets_a_convert_hint() -> None:
    with pytest.raises(EngineError, match="raw images only") as err:
        build({**CASES["minimal-linux"], "disks": [{"file": "disks/root.qcow2"}]})
    assert "vmdesk disk convert disks/root.qcow2 disks/root.raw" in str(err.value.hint)


def test_nvme_needs_macos_14() -> None:
    old = HostFacts("darwin", "arm64", (13, 5))
    with pytest.raises(EngineError, match=r"NVMe disks \(macOS 14"):
        build(CASES["desktop"], fake.FakeFramework((13, 5)), host=old)


def test_macos_13_runs_a_vm_without_nvme() -> None:
    host13 = HostFacts("darwin", "arm64", (13, 0))
    result, _ = build(CASES["uefi-installer"], fake.FakeFramework((13, 0)), host=host13)
    assert result.configuration.fake_class == "VZVirtualMachineConfiguration"


def test_clipboard_port_name_comes_from_the_class() -> None:
    fw = fake.FakeFramework()
    fw.responses["VZSpiceAgentPortAttachment.spiceAgentPortName"] = lambda _: "from.the.class"
    result, _ = build(CASES["desktop"], fw)
    assert "'from.the.class'" in "\n".join(fake.render(result.configuration))


def test_read_only_share_is_read_only() -> None:
    result, _ = build(CASES["desktop"])
    shares = result.configuration.fake_setting("setDirectorySharingDevices_")
    flags = [s.fake_setting("setShare_")._ctor[1][0]._ctor[1][1] for s in shares]
    assert flags == [False, True]


def test_bridged_needs_unrestricted_and_the_entitlement() -> None:
    nic = {"mode": "bridged", "bridge": "en0", "mac": MAC}
    base = {**CASES["minimal-linux"], "nics": [nic]}
    plain = HostFacts("darwin", "arm64", (14, 0))
    with pytest.raises(EngineError, match=r"bridged networking \(an unrestricted VM only\)"):
        build(base, host=plain)
    with pytest.raises(EngineError, match=NETWORKING_ENTITLEMENT):
        build({**base, "isolation": "unrestricted"}, host=plain)
    entitled = HostFacts("darwin", "arm64", (14, 0), frozenset({NETWORKING_ENTITLEMENT}))
    result, _ = build({**base, "isolation": "unrestricted"}, host=entitled)
    (device,) = result.configuration.fake_setting("setNetworkDevices_")
    assert device.fake_setting("setAttachment_").fake_class == "VZBridgedNetworkDeviceAttachment"
    with pytest.raises(EngineError, match="'en9' is not an interface") as err:
        build({**base, "isolation": "unrestricted", "nics": [{**nic, "bridge": "en9"}]},
              host=entitled)  # fmt: skip
    assert err.value.hint == "use one of: en0, en1"


def test_invalid_share_tag_is_refused_with_the_framework_message() -> None:
    fw = fake.FakeFramework()
    fw.invalid_tags.add("home")
    with pytest.raises(EngineError, match="tag 'home' is refused: invalid tag"):
        build(CASES["desktop"], fw)


def test_fake_refuses_names_not_on_the_surface() -> None:
    fw = fake.FakeFramework()
    with pytest.raises(fake.NotOnSurface, match="not on the checked-in API surface"):
        fw.VZMacPlatformConfiguration  # noqa: B018
    with pytest.raises(fake.NotOnSurface):
        fw.VZVirtualMachineConfiguration.alloc().init().setAudioDevices_([])
    with pytest.raises(AttributeError, match="needs macOS 14"):
        fake.FakeFramework((13, 0)).VZNVMExpressControllerDeviceConfiguration  # noqa: B018
