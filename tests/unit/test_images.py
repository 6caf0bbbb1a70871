"""Pure parts of the tiny-image builder: module ordering, bzImage unwrapping, READY lines."""

from __future__ import annotations

import gzip
import lzma
import struct

import pytest

from vmdesk.core.arch import parse_arch
from vmdesk.core.errors import ImageBuildError, VMDeskError
from vmdesk.images import bzimage, kmods, tiny_linux

MODULES_DEP = """\
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio.ko:
kernel/fs/fuse/virtiofs.ko: kernel/fs/fuse/fuse.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/fs/fuse/fuse.ko:
kernel/drivers/gpu/drm/virtio/virtio-gpu.ko: kernel/drivers/virtio/virtio.ko
"""  # noqa: E501


def test_load_order_puts_dependencies_first_once() -> None:
    deps = kmods.parse_modules_dep(MODULES_DEP)
    order, missing = kmods.load_order(deps, ["virtiofs", "virtio_pci", "virtio-gpu", "nope"])
    names = [kmods.module_name(p) for p in order]
    assert missing == ["nope"]
    assert len(names) == len(set(names))
    assert names.index("virtio") < names.index("virtio_ring") < names.index("virtiofs")
    assert names.index("fuse") < names.index("virtiofs")
    assert names.index("virtio_pci_modern_dev") < names.index("virtio_pci")
    assert "virtio_gpu" in names


@pytest.mark.parametrize(
    ("path", "name"),
    [("kernel/a/virtio-gpu.ko", "virtio_gpu"), ("x/9pnet_virtio.ko.xz", "9pnet_virtio"),
     ("fuse.ko.zst", "fuse")],
)  # fmt: skip
def test_module_name(path: str, name: str) -> None:
    assert kmods.module_name(path) == name


def _fake_bzimage(payload: bytes, setup_sects: int = 4) -> bytes:
    header = bytearray((setup_sects + 1) * 512)
    header[0x1F1] = setup_sects
    header[0x202:0x206] = b"HdrS"
    struct.pack_into("<II", header, 0x248, 16, len(payload))
    return bytes(header) + b"\0" * 16 + payload + b"trailer"


ELF = b"\x7fELF" + bytes(range(256)) * 4


def test_extract_vmlinux_from_xz_and_gzip_payloads() -> None:
    assert bzimage.extract_vmlinux(_fake_bzimage(lzma.compress(ELF, format=lzma.FORMAT_XZ))) == ELF
    gz = gzip.compress(ELF) + struct.pack("<I", len(ELF))  # the kernel appends the size
    assert bzimage.extract_vmlinux(_fake_bzimage(gz, setup_sects=27)) == ELF


def test_extract_vmlinux_rejects_non_kernels() -> None:
    with pytest.raises(ImageBuildError, match="not an x86 bzImage"):
        bzimage.extract_vmlinux(b"MZ" + b"\0" * 1000)
    with pytest.raises(ImageBuildError, match="unsupported"):
        bzimage.extract_vmlinux(_fake_bzimage(b"BZh91AY&SY" + b"\0" * 32))


def test_parse_ready_line() -> None:
    fields = tiny_linux.parse_ready("arch=aarch64 kernel=6.1.0-56-arm64 uptime=2.5 net=none")
    assert fields == {"arch": "aarch64", "kernel": "6.1.0-56-arm64", "uptime": "2.5", "net": "none"}


def test_cmdline_names_the_console_shares_and_halt() -> None:
    image = tiny_linux.TinyImage("aarch64", tiny_linux.images_dir(), "6.1", (), "vmlinuz")
    line = image.cmdline(shares="host:/mnt/host:9p", halt=True)
    assert line.startswith("console=ttyAMA0 ")
    assert "vmdesk.shares=host:/mnt/host:9p" in line.split()
    assert "vmdesk.halt=1" in line.split()
    x86 = tiny_linux.TinyImage("x86_64", tiny_linux.images_dir(), "6.1", (), "vmlinux")
    assert x86.cmdline().startswith("console=ttyS0 ")
    assert "vmdesk.halt=1" not in x86.cmdline()


@pytest.mark.parametrize(("text", "arch"), [("arm64", "aarch64"), ("AMD64", "x86_64"),
                                            ("aarch64", "aarch64"), ("x64", "x86_64")])  # fmt: skip
def test_parse_arch_accepts_common_spellings(text: str, arch: str) -> None:
    assert parse_arch(text) == arch


def test_parse_arch_rejects_others_with_a_hint() -> None:
    with pytest.raises(VMDeskError) as err:
        parse_arch("riscv64")
    assert err.value.hint == "use one of: x86_64, aarch64"
