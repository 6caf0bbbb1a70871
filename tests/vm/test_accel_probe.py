"""The accelerator probe on this very machine: it chooses, says why, and the choice boots."""

from __future__ import annotations

import pytest

from tests.conftest import ImageGetter
from vmdesk.core.arch import host_arch
from vmdesk.engines.qemu import accel
from vmdesk.engines.qemu.boot_argv import BootSpec
from vmdesk.engines.qemu.process import QemuProcess
from vmdesk.images import tiny_linux

pytestmark = pytest.mark.vm


def test_real_probe_reports_a_choice_that_boots(
    tiny_image: ImageGetter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(accel.ENV_OVERRIDE, raising=False)
    arch = host_arch()
    assert arch is not None, "tests run on x86_64 or aarch64 hosts"
    image = tiny_image(arch)
    choice = accel.choose(arch, refresh=True)
    print(f"accelerator chosen on this host for {arch}: {choice.accel} ({choice.reason})")
    assert choice.accel in ("kvm", "tcg")
    if accel.host_facts().kvm_problem is None:
        assert "probe" in choice.reason  # KVM was tried for real, not assumed
    spec = BootSpec(arch, choice.accel, image.kernel, image.initrd, image.cmdline(halt=True))
    with QemuProcess(spec) as vm:
        vm.wait_serial(tiny_linux.READY_PATTERN, 90)
        assert vm.wait_exit(10) == 0
    again = accel.choose(arch)
    assert again.accel == choice.accel
    assert "cached for this boot" in again.reason
