"""Golden tests of the direct-kernel boot argv builder: one file per option combination."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import golden_files
from vmdesk.engines.qemu import boot_argv, options
from vmdesk.engines.qemu.boot_argv import BootSpec, Endpoints, Share

KERNEL = Path("/images/vmlinuz")
INITRD = Path("/images/initrd.img")

CASES: dict[str, tuple[BootSpec, Endpoints]] = {
    "aarch64-tcg-nic": (
        BootSpec("aarch64", "tcg", KERNEL, INITRD, "console=ttyAMA0 quiet"),
        Endpoints(qmp_fd=3, serial_fd=4, serial_log=Path("/logs/serial.log")),
    ),
    "x86_64-tcg-no-nic": (
        BootSpec("x86_64", "tcg", KERNEL, INITRD, "console=ttyS0", nic=False, memory_mib=512),
        Endpoints(qmp_fd=5, serial_fd=6),
    ),
    "x86_64-kvm-smp": (
        BootSpec("x86_64", "kvm", KERNEL, None, "", cpus=2, memory_mib=1024),
        Endpoints(qmp_fd=3, serial_fd=4),
    ),
    "aarch64-hvf-shares": (
        BootSpec(
            "aarch64", "hvf", KERNEL, INITRD, "console=ttyAMA0",
            shares=(
                Share("home", Path("/Users/me/My Files")),
                Share("data", Path("/data,with,commas"), read_only=True),
            ),
        ),
        Endpoints(qmp_fd=3, serial_fd=4, serial_log=Path("/logs/a,b/serial.log")),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_argv_matches_golden_file(name: str) -> None:
    spec, endpoints = CASES[name]
    got = "\n".join(boot_argv.build(spec, endpoints)) + "\n"
    golden_files.check(f"qemu-argv/{name}.argv", got)


def test_builder_is_pure() -> None:
    spec, endpoints = CASES["aarch64-tcg-nic"]
    assert boot_argv.build(spec, endpoints) == boot_argv.build(spec, endpoints)


@pytest.mark.parametrize(
    ("arch", "accel", "cpu"),
    [("aarch64", "tcg", "cortex-a72"), ("x86_64", "tcg", "max"), ("x86_64", "kvm", "host"),
     ("aarch64", "hvf", "host")],
)  # fmt: skip
def test_cpu_model(arch: str, accel: str, cpu: str) -> None:
    assert options.cpu_model(arch, accel) == cpu  # type: ignore[arg-type]
