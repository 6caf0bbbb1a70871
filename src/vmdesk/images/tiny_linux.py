"""The built-in "tiny Linux" guest: a Debian kernel plus a busybox initramfs.

Used by the demo, the tests and the benchmarks. Built from Debian packages with apt, so no
internet download of a prebuilt image is needed, and cached in the user cache directory
keyed by everything that goes into it: a second build of the same inputs is instant.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from vmdesk.core import paths
from vmdesk.core.arch import Arch, debian_arch
from vmdesk.core.errors import HostToolMissing, ImageBuildError, VMDeskError
from vmdesk.images import bzimage, debian, kmods

IMAGE_NAME = "tiny-linux"
# Bump when the way an image is assembled changes, so cached images are rebuilt.
RECIPE_VERSION = 4

# Drivers the guest loads at boot, before anything else (with their dependencies).
BASE_MODULES: tuple[str, ...] = ("virtio_pci", "evdev", "button", "gpio_keys")
# Drivers the image carries (with their dependencies); the guest loads those its devices
# need. Built-in ones are skipped.
MODULES: tuple[str, ...] = (
    # virtio transports and devices
    "virtio_pci", "virtio_mmio", "virtio_blk", "virtio_net", "virtio_console", "virtio_rng",
    "virtio_scsi", "virtio_balloon", "virtio_input", "virtio_gpu", "nvme",
    # shared folders
    "virtiofs", "9pnet_virtio", "9p",
    # host <-> guest sockets
    "vmw_vsock_virtio_transport",
    # TPM
    "tpm_tis", "tpm_crb", "tpm_tis_device",
    # UEFI variables, read and written through /sys/firmware/efi/efivars
    "efivarfs",
    # input: event devices, the power buttons (ACPI on x86_64, gpio-keys on aarch64 virt), USB
    "evdev", "button", "gpio_keys", "xhci_pci", "usbhid", "hid_generic",
    # media: SCSI disks and CDs (virtio-scsi, USB storage), q35's AHCI for CDs
    "sd_mod", "sr_mod", "isofs", "ahci", "usb_storage",
    # a file system to trim (fstrim: the host gets a deleted file's space back)
    "ext4", "crc32c_generic",  # ext4 asks the crypto API for crc32c: no module names it
)  # fmt: skip

SERIAL_CONSOLE: dict[Arch, str] = {"x86_64": "ttyS0", "aarch64": "ttyAMA0"}
READY_MARKER = "VMDESK-READY"
# The whole READY line (a regex for the serial console); group 1 holds its key=value pairs.
READY_PATTERN = rf"^{READY_MARKER} ([^\n]*)\n"

# A throwaway test guest: skip work that only matters on real hardware or for security
# hardening (each saves a little under emulation); panic=-1 reboots, which QEMU's
# -no-reboot turns into an exit instead of a hang.
_FAST_BOOT_ARGS = (
    "quiet", "panic=-1", "mitigations=off", "tsc=reliable", "no_timer_check",
    "cryptomgr.notests", "rcupdate.rcu_expedited=1", "i8042.noaux", "i8042.nokbd",
    "i8042.nopnp",
)  # fmt: skip

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TinyImage:
    """A built image: what a VM needs for a direct kernel boot, or to boot the kernel from
    UEFI firmware through its EFI stub."""

    arch: Arch
    directory: Path
    kernel_release: str
    packages: tuple[str, ...]

    kernel_file: str
    efi_kernel_file: str | None = None  # None in images built before it was kept

    @property
    def kernel(self) -> Path:
        """The kernel for QEMU's direct boot (-kernel): on x86_64 the ELF vmlinux, which
        boots through PVH without decompressing itself under emulation."""
        return self.directory / self.kernel_file

    @property
    def efi_kernel(self) -> Path:
        """The kernel as UEFI firmware can run it (a PE image with the EFI stub): the
        bzImage on x86_64, the Image on aarch64. It takes ``initrd=`` from its command line
        to load the initrd from the same file system."""
        if self.efi_kernel_file is None:
            raise ImageBuildError(
                f"the cached {IMAGE_NAME} image for {self.arch} has no EFI-bootable kernel",
                hint=f"rebuild it: `vmdesk image build {IMAGE_NAME} --arch {self.arch} --force`",
            )
        return self.directory / self.efi_kernel_file

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    def cmdline(self, *, shares: str | None = None, halt: bool = False) -> str:
        """The kernel command line; ``shares`` is ``tag:/mnt/point[:virtiofs|9p],...``."""
        parts = [f"console={SERIAL_CONSOLE[self.arch]}", *_FAST_BOOT_ARGS]
        if shares:
            parts.append(f"vmdesk.shares={shares}")
        if halt:
            parts.append("vmdesk.halt=1")
        return " ".join(parts)


def parse_ready(fields: str) -> dict[str, str]:
    """``arch=aarch64 kernel=6.1.0 ...`` (the READY line after the marker) as a dict."""
    return dict(item.split("=", 1) for item in fields.split() if "=" in item)


def _guest_file(name: str) -> bytes:
    return resources.files("vmdesk.images").joinpath("guest", name).read_bytes()


def _recipe_key(arch: Arch, packages: list[debian.Package]) -> str:
    digest = hashlib.sha256()
    digest.update(f"{RECIPE_VERSION}\n{arch}\n".encode())
    for pkg in packages:
        digest.update(f"{pkg.spec}\n".encode())
    for name in ("init", "udhcpc.script"):
        digest.update(_guest_file(name))
    digest.update("\n".join(BASE_MODULES + MODULES).encode())
    return digest.hexdigest()[:16]


def images_dir() -> Path:
    return paths.cache_dir() / "images"


def _load(directory: Path) -> TinyImage:
    manifest = json.loads((directory / "manifest.json").read_text())
    return TinyImage(
        arch=manifest["arch"],
        directory=directory,
        kernel_release=manifest["kernel_release"],
        packages=tuple(manifest["packages"]),
        kernel_file=manifest["kernel"],
        efi_kernel_file=manifest.get("efi_kernel"),
    )


def _cached(arch: Arch) -> list[Path]:
    """Complete cached builds for ``arch``, newest first."""
    found = [
        d for d in images_dir().glob(f"{IMAGE_NAME}-{arch}-*") if (d / "manifest.json").is_file()
    ]
    return sorted(found, key=lambda d: d.stat().st_mtime, reverse=True)


def _resolve(arch: Arch) -> list[debian.Package]:
    darch = debian_arch(arch)
    debian.ensure_architecture(darch)
    return [
        debian.kernel_package(darch),
        debian.candidate(f"busybox-static:{darch}"),
        # busybox's nc has no UDP: netcat-traditional (and the C library it links) lets
        # tests serve UDP from the guest.
        debian.candidate(f"netcat-traditional:{darch}"),
        debian.candidate(f"libc6:{darch}"),
    ]


def build(arch: Arch, *, progress: Progress | None = None, force: bool = False) -> TinyImage:
    """Return the tiny image for ``arch``, building it first unless it is cached."""
    say = progress or (lambda _msg: None)
    say(f"resolving Debian packages for {arch}")
    try:
        packages = _resolve(arch)
    except HostToolMissing:
        cached = _cached(arch)
        if cached and not force:  # no apt here, but an earlier build is still good
            return _load(cached[0])
        raise
    target = images_dir() / f"{IMAGE_NAME}-{arch}-{_recipe_key(arch, packages)}"
    if (target / "manifest.json").is_file() and not force:
        return _load(target)

    images_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=images_dir()) as tmp:
        work = Path(tmp)
        say("downloading " + ", ".join(p.spec for p in packages))
        kernel_deb, busybox_deb, netcat_deb, libc_deb = debian.download(packages, work / "debs")
        say("unpacking the kernel, busybox and netcat")
        debian.extract(kernel_deb, work / "kernel")
        debian.extract(busybox_deb, work / "busybox")
        debian.extract(netcat_deb, work / "netcat")
        debian.extract(libc_deb, work / "libc")
        out = work / "image"
        out.mkdir()
        say("selecting kernel modules")
        release = _assemble_root(arch, work, out / "root")
        say("packing the initramfs")
        _pack_initramfs(out / "root", out / "initrd.img")
        shutil.rmtree(out / "root")
        kernel_file, efi_kernel_file = _install_kernel(arch, work / "kernel" / "boot", release, out)
        manifest = {
            "name": IMAGE_NAME,
            "arch": arch,
            "kernel_release": release,
            "kernel": kernel_file,
            "efi_kernel": efi_kernel_file,
            "packages": [p.spec for p in packages],
            "recipe_version": RECIPE_VERSION,
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if target.exists():  # a forced rebuild replaces the old one
            shutil.rmtree(target)
        out.rename(target)  # atomic: the cache never holds a half-built image
    # Older builds of this arch are superseded; the one before stays, because a process
    # that loaded it before Debian published a new kernel may still be booting from it.
    for stale in [d for d in _cached(arch) if d != target][1:]:
        shutil.rmtree(stale, ignore_errors=True)
    say(f"built {target}")
    return _load(target)


def _install_kernel(arch: Arch, boot: Path, release: str, out: Path) -> tuple[str, str]:
    """Copy the kernel into ``out``; returns the file names there of the kernel for direct
    boot and of the one for UEFI boot (the same file, except on x86_64 with PVH)."""
    vmlinuz = boot / f"vmlinuz-{release}"
    config = (boot / f"config-{release}").read_text()
    if "CONFIG_EFI_STUB=y" not in config:
        raise ImageBuildError(
            f"the {arch} kernel {release} has no EFI stub, so UEFI firmware cannot boot it",
            hint="report this: Debian's kernels are built with CONFIG_EFI_STUB=y",
        )
    shutil.copyfile(vmlinuz, out / "vmlinuz")
    if arch == "x86_64" and "CONFIG_PVH=y" in config:
        (out / "vmlinux").write_bytes(bzimage.extract_vmlinux(vmlinuz.read_bytes()))
        return "vmlinux", "vmlinuz"
    return "vmlinuz", "vmlinuz"


def _depmod() -> str:
    for candidate in (shutil.which("depmod"), "/usr/sbin/depmod", "/sbin/depmod"):
        if candidate and Path(candidate).exists():
            return candidate
    raise HostToolMissing("depmod was not found", hint="install it: `sudo apt-get install kmod`")


def _assemble_root(arch: Arch, work: Path, root: Path) -> str:
    """Lay out the initramfs tree; returns the kernel release."""
    kernel_root = work / "kernel"
    releases = sorted(p.name for p in (kernel_root / "lib" / "modules").iterdir())
    if len(releases) != 1:
        raise ImageBuildError(f"expected one kernel in the package, found {releases}")
    release = releases[0]
    depmod = _depmod()
    subprocess.run([depmod, "-b", str(kernel_root), release], check=True, capture_output=True)
    src_mods = kernel_root / "lib" / "modules" / release
    deps = kmods.parse_modules_dep((src_mods / "modules.dep").read_text())
    order, missing = kmods.load_order(deps, BASE_MODULES + MODULES)
    base_order, _ = kmods.load_order(deps, BASE_MODULES)
    builtin = {
        kmods.module_name(line) for line in (src_mods / "modules.builtin").read_text().split()
    }
    absent = [name for name in missing if name.replace("-", "_") not in builtin]

    dst_mods = root / "lib" / "modules" / release
    for rel in order:
        (dst_mods / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src_mods / rel, dst_mods / rel)
    for name in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
        if (src_mods / name).exists():
            shutil.copyfile(src_mods / name, dst_mods / name)
    subprocess.run([depmod, "-b", str(root), release], check=True, capture_output=True)

    etc = root / "etc" / "vmdesk"
    etc.mkdir(parents=True)
    (etc / "modules.order").write_text("".join(f"{rel}\n" for rel in base_order))
    (etc / "absent-modules").write_text("".join(f"{name}\n" for name in absent))
    (etc / "udhcpc.script").write_bytes(_guest_file("udhcpc.script"))
    (etc / "udhcpc.script").chmod(0o755)
    (root / "bin").mkdir()
    shutil.copyfile(work / "busybox" / "bin" / "busybox", root / "bin" / "busybox")
    (root / "bin" / "busybox").chmod(0o755)
    _install_netcat(arch, work, root)
    (root / "init").write_bytes(_guest_file("init"))
    (root / "init").chmod(0o755)
    return release


# The dynamic loader each architecture's programs ask for, and where Debian puts libc.
_LOADER: dict[Arch, tuple[str, str]] = {
    "x86_64": ("lib64/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu"),
    "aarch64": ("lib/ld-linux-aarch64.so.1", "lib/aarch64-linux-gnu"),
}


def _install_netcat(arch: Arch, work: Path, root: Path) -> None:
    """``nc.traditional`` with the two files of libc it needs (loader and libc.so.6)."""
    loader, libdir = _LOADER[arch]
    libc = work / "libc"
    for rel in (loader, f"{libdir}/libc.so.6"):
        # The real files live in libdir; the loader's own path is a symlink (absolute on
        # amd64, which must not be followed on the host).
        source = libc / libdir / Path(rel).name
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / rel)
        (root / rel).chmod(0o755)
    (root / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "netcat" / "bin" / "nc.traditional", root / "usr/bin/nc.traditional")
    (root / "usr/bin/nc.traditional").chmod(0o755)


def _pack_initramfs(root: Path, dest: Path) -> None:
    cpio = shutil.which("cpio")
    if cpio is None:
        raise HostToolMissing("cpio was not found", hint="install it: `sudo apt-get install cpio`")
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    listing = "".join(f"{name}\n" for name in [".", *names])
    with dest.open("wb") as out:
        subprocess.run(
            [cpio, "--quiet", "-o", "-H", "newc", "-R", "0:0"],
            input=listing.encode(),
            stdout=out,
            cwd=root,
            check=True,
        )


def find(arch: Arch) -> TinyImage:
    """The newest built image for ``arch`` without building (clear error when none)."""
    cached = _cached(arch)
    if not cached:
        raise VMDeskError(
            f"no {IMAGE_NAME} image for {arch} has been built yet",
            hint=f"run `vmdesk image build {IMAGE_NAME} --arch {arch}`",
        )
    return _load(cached[0])
