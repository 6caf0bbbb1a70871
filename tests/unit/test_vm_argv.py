"""Golden tests of the VM-description -> QEMU argv builder, and QEMU accepting each argv."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from qemu.qmp.legacy import QEMUMonitorProtocol

from vmdesk.core.config import VMConfig, from_dict
from vmdesk.core.errors import EngineError
from vmdesk.engines.qemu.firmware import select as select_firmware
from vmdesk.engines.qemu.vm_argv import Firmware, Runtime, build_vm

GOLDEN = Path(__file__).parent.parent / "golden" / "vm-argv"
BUNDLE = Path("/vms/example.vmdesk")
UUID = "8a5f3c2e-1111-4e5e-9a0b-123456789abc"
LINUX = {"kind": "linux", "kernel": "boot/vmlinuz", "initrd": "boot/initrd.img",
         "cmdline": "console=ttyAMA0 quiet"}  # fmt: skip

CASES: dict[str, tuple[dict[str, Any], str, bool]] = {
    # name: (description, accel, uefi firmware?)
    "minimal-aarch64": ({"boot": LINUX, "cpus": 1, "memory": "256MiB"}, "tcg", False),
    "aarch64-desktop": (
        {
            "arch": "aarch64", "cpus": 2, "memory": "4GiB", "boot": {"kind": "uefi"},
            "disks": [{"file": "disks/root.qcow2", "boot_order": 1},
                      {"file": "disks/data.img", "format": "raw", "interface": "nvme"}],
            "display": {"device": "virtio-gpu", "width": 1920, "height": 1080, "vnc": True},
            "shares": [{"tag": "home", "path": "/home/me/My Files,2024"}],
            "nics": [{"mac": "52:54:00:aa:bb:cc"}],
        },
        "tcg", True,
    ),
    "x86_64-headless-server": (
        {
            "arch": "x86_64", "cpus": 2, "memory": "2GiB", "boot": {"kind": "bios"},
            "disks": [{"file": "disks/root.qcow2", "cache": "none", "boot_order": 1}],
            "display": {"device": "none"},
            "input": {"usb_keyboard": False, "usb_tablet": False},
        },
        "kvm", False,
    ),
    "port-forwards": (
        {
            "boot": LINUX,
            "nics": [{"mac": "52:54:00:12:34:56", "forwards": [
                {"protocol": "tcp", "host_port": 2222, "guest_port": 22},
                {"protocol": "udp", "host_address": "0.0.0.0", "host_port": 5353,
                 "guest_port": 53},
            ]}],
            "display": {"device": "none"},
        },
        "tcg", False,
    ),
    "multiple-disks": (
        {
            "arch": "x86_64", "boot": {"kind": "bios"},
            "disks": [
                {"file": "disks/a.qcow2", "cache": "writeback", "boot_order": 2},
                {"file": "disks/b.qcow2", "interface": "nvme", "cache": "none"},
                {"file": "disks/c.img", "format": "raw", "interface": "usb",
                 "cache": "writethrough", "read_only": True},
                {"file": "/srv/d.img", "format": "raw", "cache": "directsync"},
                {"file": "disks/e.qcow2", "cache": "unsafe", "boot_order": 1},
            ],
        },
        "tcg", False,
    ),
    "cd-install-x86_64": (
        {
            "arch": "x86_64", "boot": {"kind": "uefi"},
            "disks": [{"file": "disks/root.qcow2", "boot_order": 2}],
            "cdroms": [{"file": "/isos/installer.iso", "boot_order": 1}],
        },
        "tcg", True,
    ),
    "cd-install-aarch64": (
        {
            "arch": "aarch64", "boot": {"kind": "uefi"},
            "disks": [{"file": "disks/root.qcow2", "boot_order": 2}],
            "cdroms": [{"file": "/isos/installer.iso", "boot_order": 1}],
        },
        "tcg", True,
    ),
    "x86_64-secure-boot": (
        {"arch": "x86_64", "boot": {"kind": "uefi", "secure_boot": True},
         "display": {"device": "ramfb", "vnc": False}},
        "tcg", True,
    ),
    "bridged-and-none-nics": (
        {"boot": LINUX, "nics": [{"mode": "bridged", "bridge": "br0"}, {"mode": "none"}],
         "isolation": "unrestricted"},
        "tcg", False,
    ),
    "usb-passthrough": (
        {"boot": LINUX, "usb_devices": [{"vendor_id": "046d", "product_id": "c52b"}],
         "isolation": "unrestricted", "serial": {"enabled": False}},
        "tcg", False,
    ),
}  # fmt: skip


def _config(data: dict[str, Any]) -> VMConfig:
    return from_dict({"name": "example", "uuid": UUID, **data})


def _runtime(config: VMConfig, accel: str, uefi: bool, **paths: Path) -> Runtime:
    firmware = None
    if uefi:
        secure = bool(getattr(config.boot, "secure_boot", False))
        firmware = Firmware(
            paths.get("code", Path(f"/usr/share/fw/{config.arch}-code.fd")),
            paths.get("vars", BUNDLE / "nvram/efivars.fd"),
            secure,
        )
    return Runtime(
        accel=accel,  # type: ignore[arg-type]
        qmp_fd=3,
        serial_fd=4 if config.serial.enabled else None,
        vnc_socket=paths.get("vnc", BUNDLE / "run/vnc.sock"),
        firmware=firmware,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_argv_matches_golden_file(name: str) -> None:
    data, accel, uefi = CASES[name]
    config = _config(data)
    got = "\n".join(build_vm(config, BUNDLE, _runtime(config, accel, uefi))) + "\n"
    golden = GOLDEN / f"{name}.argv"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got)
    assert got == golden.read_text(), f"regenerate with UPDATE_GOLDEN=1 if intended: {golden}"


def test_builder_is_pure_and_does_not_touch_the_config() -> None:
    data, accel, uefi = CASES["aarch64-desktop"]
    config = _config(data)
    before = config.model_dump()
    runtime = _runtime(config, accel, uefi)
    assert build_vm(config, BUNDLE, runtime) == build_vm(config, BUNDLE, runtime)
    assert config.model_dump() == before


def test_commas_in_user_values_are_escaped() -> None:
    data, accel, uefi = CASES["aarch64-desktop"]
    argv = build_vm(_config(data), BUNDLE, _runtime(_config(data), accel, uefi))
    assert any("path=/home/me/My Files,,2024," in a for a in argv)


def test_uefi_without_firmware_and_tpm_are_clear_errors() -> None:
    config = _config({"boot": {"kind": "uefi"}})
    with pytest.raises(EngineError) as err:
        build_vm(config, BUNDLE, Runtime("tcg", 3, 4, None, None))
    assert err.value.hint and "ovmf" in err.value.hint
    tpm = _config({"boot": LINUX, "tpm": True})
    with pytest.raises(EngineError, match="TPM") as err:
        build_vm(tpm, BUNDLE, Runtime("tcg", 3, 4, None, None))
    assert "--no-tpm" in (err.value.hint or "")


# -- QEMU 7.2 accepts what we build ---------------------------------------------------------

# Bridged networking needs a host bridge and USB passthrough the device: not on a CI machine.
ACCEPTED = sorted(set(CASES) - {"bridged-and-none-nics", "usb-passthrough"})


def _materialise(config: VMConfig, bundle: Path, tmp: Path) -> VMConfig:
    """Point every file of ``config`` at a real small file under ``tmp``."""
    data = config.model_dump(mode="json")
    for disk in data["disks"]:
        target = bundle / Path(disk["file"]).name
        subprocess.run(["qemu-img", "create", "-q", "-f", disk["format"], str(target), "16M"],
                       check=True)  # fmt: skip
        disk["file"] = str(target)
    for cd in data["cdroms"]:
        target = bundle / "cd.iso"
        target.write_bytes(b"\0" * 2048 * 16)
        cd["file"] = str(target)
    if data["boot"]["kind"] == "linux":
        for key in ("kernel", "initrd"):
            (bundle / key).write_bytes(b"\0" * 4096)
            data["boot"][key] = str(bundle / key)
    for share in data["shares"]:
        share["path"] = str(tmp)
    return from_dict(data)


@pytest.mark.vm
@pytest.mark.parametrize("name", ACCEPTED)
def test_qemu_accepts_the_argv(name: str, tmp_path: Path) -> None:
    data, _accel, uefi = CASES[name]
    bundle = tmp_path / "vm.vmdesk"
    bundle.mkdir()
    config = _materialise(_config(data), bundle, tmp_path)
    paths: dict[str, Path] = {"vnc": tmp_path / "vnc.sock"}
    if uefi:
        secure = bool(getattr(config.boot, "secure_boot", False))
        code, template = select_firmware(config.arch, secure)
        shutil.copyfile(template, tmp_path / "vars.fd")
        paths |= {"code": code, "vars": tmp_path / "vars.fd"}
    qmp_path, serial_path = tmp_path / "qmp.sock", tmp_path / "serial.sock"
    qmp_sock = socket.socket(socket.AF_UNIX)
    qmp_sock.bind(str(qmp_path))
    qmp_sock.listen(1)
    serial_sock = socket.socket(socket.AF_UNIX)
    serial_sock.bind(str(serial_path))
    serial_sock.listen(1)
    runtime = Runtime("tcg", qmp_sock.fileno(), serial_sock.fileno(),
                      paths["vnc"], _runtime(config, "tcg", uefi, **paths).firmware)  # fmt: skip
    argv = [f"qemu-system-{config.arch}", *build_vm(config, bundle, runtime), "-S"]
    proc = subprocess.Popen(argv, pass_fds=(qmp_sock.fileno(), serial_sock.fileno()),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    qmp_sock.close()
    serial_sock.close()
    try:
        monitor = QEMUMonitorProtocol(str(qmp_path))
        try:
            monitor.connect()
        except Exception:
            proc.wait(timeout=10)
            assert proc.stdout is not None
            pytest.fail(f"QEMU rejected the argv: {proc.stdout.read().decode()}")
        assert monitor.cmd("query-status")["status"] == "prelaunch"
        monitor.cmd("quit")
        with contextlib.suppress(EOFError):  # qemu.qmp 0.0.6: EOF after quit is expected
            monitor.close()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
