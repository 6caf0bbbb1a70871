"""The accelerator decision (pure) and the /dev/kvm check."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmdesk.core.errors import VMDeskError
from vmdesk.engines.qemu.accel import (
    HostFacts,
    ProbeResult,
    decide,
    kvm_problem,
    needs_probe,
    parse_override,
)

LINUX_KVM = HostFacts("Linux", "x86_64", None, hvf=False)
LINUX_NO_KVM = HostFacts("Linux", "x86_64", "/dev/kvm does not exist", hvf=False)
MAC_ARM = HostFacts("Darwin", "aarch64", "not a Linux host", hvf=True)
MAC_ARM_NO_HVF = HostFacts("Darwin", "aarch64", "not a Linux host", hvf=False)


def test_working_kvm_probe_chooses_kvm() -> None:
    assert needs_probe("x86_64", LINUX_KVM, None)
    choice = decide("x86_64", LINUX_KVM, None, ProbeResult(True, "ready in 0.8 s"))
    assert choice.accel == "kvm"
    assert "ready in 0.8 s" in choice.reason


def test_failed_kvm_probe_falls_back_to_tcg_and_says_why() -> None:
    choice = decide("x86_64", LINUX_KVM, None, ProbeResult(False, "QEMU reported internal-error"))
    assert choice.accel == "tcg"
    assert "internal-error" in choice.reason
    assert "/dev/kvm is present" in choice.reason


def test_unusable_kvm_device_means_tcg_without_probe() -> None:
    assert not needs_probe("x86_64", LINUX_NO_KVM, None)
    choice = decide("x86_64", LINUX_NO_KVM, None, None)
    assert choice.accel == "tcg"
    assert "does not exist" in choice.reason


def test_foreign_guest_is_emulated_without_probe() -> None:
    assert not needs_probe("aarch64", LINUX_KVM, None)
    choice = decide("aarch64", LINUX_KVM, None, None)
    assert choice == decide("aarch64", LINUX_KVM, None, None)
    assert choice.accel == "tcg"
    assert "aarch64" in choice.reason and "x86_64" in choice.reason


def test_mac_uses_hvf_when_available() -> None:
    assert decide("aarch64", MAC_ARM, None, None).accel == "hvf"
    assert decide("aarch64", MAC_ARM_NO_HVF, None, None).accel == "tcg"
    assert decide("x86_64", MAC_ARM, None, None).accel == "tcg"


def test_override_skips_the_probe_and_is_reported() -> None:
    assert not needs_probe("x86_64", LINUX_KVM, "tcg")
    choice = decide("x86_64", LINUX_KVM, "tcg", None)
    assert choice.accel == "tcg"
    assert "requested" in choice.reason
    assert decide("x86_64", LINUX_KVM, "kvm", None).accel == "kvm"


@pytest.mark.parametrize(
    ("guest", "host", "override", "words"),
    [
        ("x86_64", LINUX_NO_KVM, "kvm", "does not exist"),
        ("aarch64", LINUX_KVM, "kvm", "host's architecture"),
        ("x86_64", LINUX_KVM, "hvf", "Hypervisor.framework"),
    ],
)
def test_impossible_override_is_a_clear_error(
    guest: str, host: HostFacts, override: str, words: str
) -> None:
    with pytest.raises(VMDeskError) as err:
        decide(guest, host, override, None)  # type: ignore[arg-type]
    assert words in err.value.message
    assert err.value.hint


def test_decide_without_a_needed_probe_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        decide("x86_64", LINUX_KVM, None, None)


@pytest.mark.parametrize(
    ("text", "want"),
    [("auto", None), (None, None), ("", None), ("KVM", "kvm"), (" tcg ", "tcg"), ("hvf", "hvf")],
)
def test_parse_override(text: str | None, want: str | None) -> None:
    assert parse_override(text) == want


def test_parse_override_rejects_unknown_names() -> None:
    with pytest.raises(VMDeskError) as err:
        parse_override("xen")
    assert "auto, kvm, hvf, tcg" in (err.value.hint or "")


def test_kvm_problem_reports_missing_and_non_kvm_devices(tmp_path: Path) -> None:
    missing = kvm_problem(tmp_path / "kvm")
    assert missing is not None and "does not exist" in missing
    not_kvm = tmp_path / "file"
    not_kvm.write_text("")
    problem = kvm_problem(not_kvm)
    assert problem is not None and "does not answer the KVM API" in problem
