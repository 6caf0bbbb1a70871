"""Golden tests of the VM-description -> QEMU argv builder, and QEMU accepting each argv."""

from __future__ import annotations

import builtins
import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qemu.qmp.legacy import QEMUMonitorProtocol

from tests import golden_files
from vmdesk.core.config import Disk, VMConfig, from_dict
from vmdesk.core.errors import EngineError
from vmdesk.engines.qemu import disk_io
from vmdesk.engines.qemu.disk_io import DiskIO
from vmdesk.engines.qemu.firmware import select as select_firmware
from vmdesk.engines.qemu.options import Accel, machine
from vmdesk.engines.qemu.vm_argv import Firmware, Runtime, boot_order, build_vm, has_spice_agent

GOLDEN = Path(__file__).parent.parent / "golden" / "vm-argv"
BUNDLE = Path("/vms/example.vmdesk")
UUID = "8a5f3c2e-1111-4e5e-9a0b-123456789abc"
LINUX = {"kind": "linux", "kernel": "boot/vmlinuz", "initrd": "boot/initrd.img",
         "cmdline": "console=ttyAMA0 quiet"}  # fmt: skip

CASES: dict[str, tuple[dict[str, Any], str, bool]] = {
    # name: (description, accel, uefi firmware?)
    "minimal-aarch64": (
        {"boot": LINUX, "cpus": 1, "memory": "256MiB", "guest_agent": False}, "tcg", False,
    ),
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
            "arch": "x86_64", "cpus": 4, "memory": "2GiB", "boot": {"kind": "bios"},
            "disks": [{"file": "disks/root.qcow2", "cache": "none", "boot_order": 1}],
            "display": {"device": "none"},
            "input": {"usb_keyboard": False, "usb_tablet": False},
            "clipboard": False,  # and no screen: no SPICE agent port, only qemu-ga's
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
    # the same NIC on passt: QEMU has its end of passt's socket pair; the forwards (an IPv6
    # one too, which slirp cannot take) are on passt's command line (test_passt.py)
    "port-forwards-passt": (
        {
            "boot": LINUX,
            "nics": [{"mac": "52:54:00:12:34:56", "forwards": [
                {"protocol": "tcp", "host_port": 2222, "guest_port": 22},
                {"protocol": "udp", "host_address": "0.0.0.0", "host_port": 5353,
                 "guest_port": 53},
                {"protocol": "tcp", "host_address": "::1", "host_port": 8443, "guest_port": 443},
            ]}, {"mode": "bridged", "bridge": "br0"}, {"mac": "52:54:00:12:34:57"}],
            "display": {"device": "none"},
            "isolation": "unrestricted",
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
    "tuned-disks": (
        {
            "arch": "x86_64", "boot": {"kind": "bios"}, "cpus": 4,
            "disks": [
                {"file": "disks/a.qcow2"},  # every default: auto
                {"file": "disks/b.qcow2", "aio": "native", "cache": "none", "queues": 2,
                 "iothread": False, "discard": False},
                {"file": "disks/c.img", "format": "raw", "aio": "threads"},
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
    # a tap VM-Desk opened (it had CAP_NET_ADMIN) for the first, the bridge helper for the other
    "bridged-tap-and-helper": (
        {"boot": LINUX, "nics": [{"mode": "bridged", "bridge": "tap-lan"},
                                 {"mode": "bridged", "bridge": "br1", "mac": "52:54:00:12:34:56"}],
         "isolation": "unrestricted"},
        "tcg", False,
    ),
    "usb-passthrough": (
        {"boot": LINUX, "usb_devices": [{"vendor_id": "046d", "product_id": "c52b"}],
         "isolation": "unrestricted", "serial": {"enabled": False}},
        "tcg", False,
    ),
    # a VirtioFS share puts RAM in a shareable memfd; a 9p share is QEMU's own
    "shares-virtiofs-and-9p": (
        {"arch": "x86_64", "boot": LINUX, "memory": "1GiB",
         "shares": [{"tag": "src", "path": "/home/me/src", "mode": "virtiofs"},
                    {"tag": "docs", "path": "/home/me/docs,old", "read_only": True,
                     "mode": "9p"}]},
        "tcg", False,
    ),
    "tpm-x86_64": ({"arch": "x86_64", "boot": LINUX, "tpm": True}, "tcg", False),
    "tpm-aarch64": ({"boot": LINUX, "tpm": True, "display": {"device": "none"}}, "tcg", False),
    # network boot only when asked for: the NIC keeps its ROM and edk2 its PXE
    "uefi-network-boot": (
        {"arch": "x86_64", "disks": [{"file": "disks/disk0.qcow2", "boot_order": 2}],
         "nics": [{"mode": "nat", "mac": "52:54:00:12:34:56", "boot_order": 1}]},
        "tcg", True,
    ),
    # TCG's default GICv2 stops at 8 CPUs; no VNC without vnc, no serial when it is off
    "aarch64-ramfb-many-cpus": (
        {"boot": LINUX, "cpus": 12, "memory": "512MiB", "nics": [],
         "display": {"device": "ramfb", "vnc": False}, "serial": {"enabled": False}},
        "tcg", False,
    ),
}  # fmt: skip
PASST = {"port-forwards-passt"}  # cases whose NAT NICs the runtime puts on passt


def _config(data: dict[str, Any]) -> VMConfig:
    return from_dict({"name": "example", "uuid": UUID, "arch": "aarch64", **data})


def _runtime(
    config: VMConfig, accel: str, uefi: bool, passt: bool = False, **paths: Path
) -> Runtime:
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
        tpm_fd=5 if config.tpm else None,
        virtiofs_fds={s.tag: 6 + i for i, s in enumerate(config.shares) if s.mode == "virtiofs"},
        tap_fds={
            i: 40 + i for i, n in enumerate(config.nics) if (n.bridge or "").startswith("tap")
        },
        nat_fds={i: 60 + i for i, n in enumerate(config.nics) if n.mode == "nat"} if passt else {},
        guest_agent_fd=30 if config.guest_agent else None,
        spice_agent_fd=31 if has_spice_agent(config) else None,
        disk_io=tuple(_verdict(disk) for disk in config.disks),
    )


def _verdict(disk: Disk) -> DiskIO:
    """What disk_io.choose says on a host with io_uring and O_DIRECT everywhere (the
    probes' own tests are in test_disk_io.py)."""
    direct = disk.cache in ("auto", "none", "directsync")
    aio = "io_uring" if disk.aio == "auto" else disk.aio
    return DiskIO(aio, direct, 8 << 20 if disk.format == "qcow2" else None)


@pytest.mark.parametrize("name", sorted(CASES))
def test_argv_matches_golden_file(name: str) -> None:
    data, accel, uefi = CASES[name]
    config = _config(data)
    got = "\n".join(build_vm(config, BUNDLE, _runtime(config, accel, uefi, name in PASST))) + "\n"
    golden_files.check(f"vm-argv/{name}.argv", got)


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


def test_uefi_without_firmware_and_tpm_without_swtpm_are_clear_errors() -> None:
    config = _config({"boot": {"kind": "uefi"}})
    with pytest.raises(EngineError) as err:
        build_vm(config, BUNDLE, Runtime("tcg", 3, 4, None, None))
    assert err.value.hint and "ovmf" in err.value.hint
    tpm = _config({"boot": LINUX, "tpm": True})
    with pytest.raises(EngineError, match="no swtpm"):
        build_vm(tpm, BUNDLE, Runtime("tcg", 3, 4, None, None))


def test_golden_directory_has_no_stale_files() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.argv")) == sorted(CASES)


class _Forbidden:
    """Stands in for anything impure; touching it fails the test."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __call__(self, *args: object, **kwargs: object) -> Any:
        raise AssertionError(f"the builder must not call {self.what}")

    def __getitem__(self, key: str) -> Any:
        raise AssertionError(f"the builder must not read os.environ[{key!r}]")

    def get(self, key: str, default: object = None) -> Any:
        raise AssertionError(f"the builder must not read os.environ[{key!r}]")


@contextlib.contextmanager
def _no_side_effects(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """File system, environment and subprocess access all fail while this is active."""
    with monkeypatch.context() as m:
        targets: list[tuple[Any, str]] = [
            (os, "stat"), (os, "lstat"), (os, "listdir"), (os, "scandir"), (os, "getcwd"),
            (os, "getenv"), (os, "access"), (builtins, "open"), (subprocess, "Popen"),
            (subprocess, "run"), (Path, "exists"), (Path, "resolve"), (Path, "is_file"),
        ]  # fmt: skip
        for owner, attr in targets:
            m.setattr(owner, attr, _Forbidden(f"{owner.__name__}.{attr}"))
        m.setattr(os, "environ", _Forbidden("os.environ"))
        yield


@pytest.mark.parametrize("name", sorted(CASES))
def test_builder_touches_no_files_environment_or_processes(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, accel, uefi = CASES[name]
    config = _config(data)
    runtime = _runtime(config, accel, uefi, name in PASST)
    expected = build_vm(config, BUNDLE, runtime)
    with _no_side_effects(monkeypatch):
        assert build_vm(config, BUNDLE, runtime) == expected


def _options(value: str) -> list[str]:
    """Split a QEMU option string the way QEMU does (``,,`` is a literal comma)."""
    parts, current, i = [], "", 0
    while i < len(value):
        if value[i] == ",":
            if value[i + 1 : i + 2] == ",":
                current += ","
                i += 2
                continue
            parts.append(current)
            current = ""
        else:
            current += value[i]
        i += 1
    return [*parts, current]


def test_every_comma_in_a_user_string_survives_qemu_option_parsing() -> None:
    config = _config({
        "arch": "x86_64", "boot": {"kind": "uefi"},
        "disks": [{"file": "disks/a,b.qcow2", "interface": "usb"}],
        "cdroms": [{"file": "/isos/x,y.iso"}],
        "nics": [{"mode": "bridged", "bridge": "br,0"}],
        "shares": [{"tag": "data", "path": "/data,with,commas"}],
    })  # fmt: skip
    runtime = Runtime(
        accel="tcg", qmp_fd=3, serial_fd=4, vnc_socket=Path("/run/a,b/vnc.sock"),
        firmware=Firmware(Path("/fw/code,1.fd"), Path("/vms/c,d/nvram/vars.fd")),
    )  # fmt: skip
    argv = build_vm(config, Path("/vms/c,d"), runtime)
    values = {o for a in argv if "=" in a or a.startswith("unix:") for o in _options(a)}
    for expected in [
        "filename=/vms/c,d/disks/a,b.qcow2", "filename=/isos/x,y.iso", "br=br,0",
        "path=/data,with,commas", "unix:/run/a,b/vnc.sock", "filename=/fw/code,1.fd",
        "filename=/vms/c,d/nvram/vars.fd",
    ]:  # fmt: skip
        assert expected in values


def test_relative_files_resolve_against_the_bundle_and_absolute_ones_stay() -> None:
    data, accel, uefi = CASES["multiple-disks"]
    config = _config(data)
    argv = build_vm(config, Path("/elsewhere/b.vmdesk"), _runtime(config, accel, uefi))
    assert any("filename=/elsewhere/b.vmdesk/disks/a.qcow2," in a for a in argv)
    assert any("filename=/srv/d.img," in a for a in argv)


def test_firmware_of_the_wrong_kind_is_refused() -> None:
    config = _config({"arch": "x86_64", "boot": {"kind": "uefi", "secure_boot": True}})
    plain = Firmware(Path("/fw/code.fd"), BUNDLE / "nvram/efivars.fd", secure_boot=False)
    with pytest.raises(EngineError, match="secure-boot") as err:
        build_vm(config, BUNDLE, Runtime("tcg", 3, 4, None, plain))
    assert err.value.hint


def test_ipv6_port_forwards_are_refused_because_qemu_7_2_cannot_parse_them() -> None:
    config = _config({
        "boot": LINUX,
        "nics": [{"forwards": [{"host_address": "::1", "host_port": 2222, "guest_port": 22}]}],
    })  # fmt: skip
    with pytest.raises(EngineError, match="IPv6") as err:
        build_vm(config, BUNDLE, Runtime("tcg", 3, 4, None))
    assert err.value.hint
    # passt takes them (its own command line has the forwards, see test_passt.py)
    argv = build_vm(config, BUNDLE, Runtime("tcg", 3, 4, None, nat_fds={0: 60}))
    assert "stream,id=net0,server=off,addr.type=fd,addr.str=60" in argv


def test_more_cdroms_than_q35_ahci_ports_is_refused() -> None:
    cds = [{"file": f"/isos/{i}.iso"} for i in range(7)]
    with pytest.raises(EngineError, match="CD-ROM"):
        build_vm(_config({"arch": "x86_64", "boot": {"kind": "bios"}, "cdroms": cds}),
                 BUNDLE, Runtime("tcg", 3, 4, None))  # fmt: skip
    argv = build_vm(_config({"boot": LINUX, "cdroms": cds}), BUNDLE, Runtime("tcg", 3, 4, None))
    assert sum(a.startswith("scsi-cd,") for a in argv) == 7  # virtio-scsi has room


def test_serial_on_without_a_socket_is_an_error() -> None:
    with pytest.raises(EngineError, match="serial"):
        build_vm(_config({"boot": LINUX}), BUNDLE, Runtime("tcg", 3, None, None))


def test_relative_share_path_is_refused() -> None:
    config = _config({"boot": LINUX, "shares": [{"tag": "src", "path": "src"}]})
    with pytest.raises(EngineError, match="absolute"):
        build_vm(config, BUNDLE, Runtime("tcg", 3, 4, None))


@pytest.mark.parametrize(
    ("display", "socket_given", "expected"),
    [({"device": "virtio-gpu"}, True, True), ({"device": "virtio-gpu"}, False, False),
     ({"device": "ramfb", "vnc": False}, True, False), ({"device": "none"}, True, False)],
)  # fmt: skip
def test_vnc_needs_a_display_a_socket_and_vnc_on(
    display: dict[str, Any], socket_given: bool, expected: bool
) -> None:
    vnc = BUNDLE / "run/vnc.sock" if socket_given else None
    argv = build_vm(_config({"boot": LINUX, "display": display}), BUNDLE,
                    Runtime("tcg", 3, 4, vnc))  # fmt: skip
    assert ("-vnc" in argv) is expected


@pytest.mark.parametrize(
    ("arch", "accel", "secure_boot", "pflash", "cpus", "expected"),
    [
        ("x86_64", "tcg", False, False, 1, "q35"),
        ("x86_64", "kvm", True, True, 2, "q35,smm=on,pflash0=fw-code,pflash1=fw-vars"),
        ("aarch64", "tcg", False, False, 8, "virt"),
        ("aarch64", "tcg", False, False, 9, "virt,gic-version=max"),
        ("aarch64", "kvm", False, True, 1, "virt,gic-version=max,pflash0=fw-code,pflash1=fw-vars"),
        ("aarch64", "hvf", True, False, 1, "virt,gic-version=max"),
    ],
)  # fmt: skip
def test_machine(
    arch: str, accel: Accel, secure_boot: bool, pflash: bool, cpus: int, expected: str
) -> None:
    got = machine(arch, accel, secure_boot=secure_boot, pflash=pflash, cpus=cpus)  # type: ignore[arg-type]
    assert got == expected


# -- QEMU 7.2 accepts what we build ---------------------------------------------------------

# Bridged networking needs a host bridge (and /etc/qemu/bridge.conf): not on a CI machine.
# usb-host needs no device present: QEMU 7.2 waits for it to be plugged in. A TPM needs its
# swtpm (tests/vm/test_tpm.py boots those for real).
# bridges and helper daemons (swtpm, virtiofsd) need more than a bare QEMU: tests/vm has those
ACCEPTED = sorted(
    set(CASES)
    - {
        "bridged-and-none-nics",
        "bridged-tap-and-helper",
        "tpm-x86_64",
        "tpm-aarch64",
        "shares-virtiofs-and-9p",
        "port-forwards-passt",  # its passt: tests/vm/test_passt.py boots it for real
    }
)


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
    io_uring = disk_io.io_uring_usable(Path(shutil.which(f"qemu-system-{config.arch}") or "/"))
    verdicts = tuple(disk_io.choose(d, Path(d.file), io_uring) for d in config.disks)
    runtime = Runtime("tcg", qmp_sock.fileno(), serial_sock.fileno(),
                      paths["vnc"], _runtime(config, "tcg", uefi, **paths).firmware,
                      disk_io=verdicts)  # fmt: skip
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
        status = monitor.cmd("query-status")
        assert isinstance(status, dict) and status["status"] == "prelaunch"
        monitor.cmd("quit")
        with contextlib.suppress(EOFError):  # qemu.qmp 0.0.6: EOF after quit is expected
            monitor.close()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_firmware_boots_disks_then_cds_and_never_the_network_unless_asked() -> None:
    """Without an order of the user's, every disk and then every CD gets a bootindex, the
    NICs lose their PXE ROM and UEFI its PXE; an explicit order is kept as it is."""
    two = [{"file": "disks/a.qcow2"}, {"file": "disks/b.qcow2"}]
    config = _config({"arch": "x86_64", "disks": two, "cdroms": [{"file": "/isos/x.iso"}]})
    order = boot_order(config)
    assert (order.disks, order.cdroms, order.nics, order.network) == ([1, 2], [3], [None], False)
    argv = build_vm(config, BUNDLE, _runtime(config, "tcg", True))
    assert "virtio-net-pci,netdev=net0,id=net0-dev,romfile=" in argv
    assert "name=opt/org.tianocore/IPv4PXESupport,string=n" in argv
    chosen = _config({"arch": "x86_64", "disks": [{"file": "disks/a.qcow2", "boot_order": 2}],
                      "cdroms": [{"file": "/isos/x.iso", "boot_order": 1}]})  # fmt: skip
    assert (boot_order(chosen).disks, boot_order(chosen).cdroms) == ([2], [1])
    bios = _config({"arch": "x86_64", "boot": {"kind": "bios"}, "disks": two})
    bios_argv = build_vm(bios, BUNDLE, _runtime(bios, "tcg", False))
    assert "virtio-net-pci,netdev=net0,id=net0-dev,romfile=" in bios_argv
    assert not any("tianocore" in a for a in bios_argv)  # SeaBIOS has no such switch
    kernel = _config({"boot": LINUX, "disks": two})  # QEMU loads the kernel: no bootindex
    assert boot_order(kernel).disks == [None, None]
    assert not any("romfile" in a or "bootindex" in a for a in build_vm(
        kernel, BUNDLE, _runtime(kernel, "tcg", False)))  # fmt: skip
