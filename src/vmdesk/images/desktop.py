"""The built-in desktop image ("debian-desktop"): a bootable GPT disk assembled on this host
from Debian 12 packages, which UEFI firmware boots exactly like a cloud image.

The disk has an EFI system partition holding GRUB on the removable-media path
(``\\EFI\\BOOT\\BOOTX64.EFI``, ``BOOTAA64.EFI``) and an ext4 root file system with systemd,
cloud-init (NoCloud), OpenSSH, the QEMU guest agent, the SPICE agent, xpra and an Xfce session
that LightDM logs the VM's user (the one cloud-init makes from the seed) into on the
virtio-gpu display. The guest prints ``VMDESK-READY ...`` on its serial console once SSH
takes logins and ``VMDESK-DESKTOP-READY ...`` once the graphical session is up.

How it is made, without loop devices or mounts of its own: the package set is resolved
against this host's apt lists (every version pinned), mmdebstrap installs exactly those
versions into a directory (aarch64 through qemu-user-static), ``mkfs.ext4 -d`` and mtools
write the file systems straight into a disk file at their partitions' offsets, sfdisk writes
the GPT, and qemu-img compresses the result into a qcow2 file.

The cache key is the recipe (this module's version and the image's own files) and every
package version, so a second build of the same inputs returns the cached image at once; the
manifest lists each installed package's version.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from vmdesk.core import paths
from vmdesk.core.arch import Arch, debian_arch, host_arch
from vmdesk.core.errors import HostToolMissing, ImageBuildError, NotFound
from vmdesk.images import debian

IMAGE_NAME = "debian-desktop"
# Bump when the way an image is assembled changes, so cached images are rebuilt.
RECIPE_VERSION = 1

READY_MARKER = "VMDESK-READY"  # SSH takes logins (what `vmdesk start --wait-ready` waits for)
DESKTOP_MARKER = "VMDESK-DESKTOP-READY"  # the graphical session is up
# Whole lines on the serial console; group 1 holds their key=value pairs.
READY_PATTERN = rf"^{READY_MARKER} ([^\r\n]*)\r?\n"
DESKTOP_PATTERN = rf"^{DESKTOP_MARKER} ([^\r\n]*)\r?\n"

SUITE = "bookworm"
# The Debian 12 suites the image comes from, by their codenames in the host's apt lists.
CODENAMES = ("bookworm", "bookworm-updates", "bookworm-security")
# What the image is for; apt adds their dependencies (never recommendations).
PACKAGES: tuple[str, ...] = (
    # the system, booted by GRUB from the firmware
    "systemd-sysv", "udev", "dbus", "libpam-systemd", "systemd-resolved", "initramfs-tools",
    "sudo",
    # the VM's identity from its seed, growing the root partition to the VM's disk
    "cloud-init", "cloud-guest-utils", "openssh-server",
    # integration with the host: guest agent, clipboard and display (SPICE), windows (xpra)
    "qemu-guest-agent", "spice-vdagent", "xpra",
    # what tests (and people) use to read and set the X clipboard from a shell
    "xclip",
    # what the I/O benchmarks run in the guest (bench/disk_io_bench.py, net_bench.py)
    "fio", "iperf3",
    # the display: X on virtio-gpu, logged in by LightDM, and a light Xfce session
    "xserver-xorg-core", "xserver-xorg-input-libinput", "lightdm", "x11-utils", "fontconfig",
    "xfce4-session", "xfwm4", "xfce4-panel", "xfdesktop4", "xfce4-terminal",
)  # fmt: skip
ARCH_PACKAGES: dict[Arch, tuple[str, ...]] = {
    "x86_64": ("linux-image-amd64", "grub-efi-amd64-bin"),
    "aarch64": ("linux-image-arm64", "grub-efi-arm64-bin"),
}
SERIAL_CONSOLE: dict[Arch, str] = {"x86_64": "ttyS0", "aarch64": "ttyAMA0"}
GRUB_TARGET: dict[Arch, str] = {"x86_64": "x86_64-efi", "aarch64": "arm64-efi"}
# The firmware's removable-media path: booted without any boot entry in its variables.
EFI_BOOT_FILE: dict[Arch, str] = {"x86_64": "BOOTX64.EFI", "aarch64": "BOOTAA64.EFI"}
# GPT partition types: the EFI system partition, and the Discoverable Partitions
# Specification's root partition of each architecture.
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_TYPE: dict[Arch, str] = {
    "x86_64": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
    "aarch64": "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
}
# Leave documentation, manual pages and translations out (about 100 MB).
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*", "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright",
)  # fmt: skip
# Files the build makes get this time (2025-01-01), so that the same packages give the
# same tree; files from the packages keep their own.
SOURCE_DATE_EPOCH = 1735689600

MIB = 1 << 20
ESP_MIB = 64  # FAT32 needs 33 MiB or so; GRUB takes 1
# The disk's size: the root partition fills it, and cloud-init grows both to a bigger VM
# disk at its first boot. Sparse: only what the files use is stored.
DISK_SIZE = 4 << 30
_UUIDS = uuid.UUID("0e7a3c5d-3f7e-4c52-a3c4-6f0d8d1b2a90")  # namespace of the image's ids

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DesktopImage:
    """A built image: a qcow2 disk that a VM uses as the base of its own overlay."""

    arch: Arch
    directory: Path
    disk_file: str
    kernel_release: str
    packages: tuple[str, ...]  # every installed package, as name=version

    @property
    def disk(self) -> Path:
        return self.directory / self.disk_file

    @property
    def manifest(self) -> Path:
        return self.directory / "manifest.json"


def parse_markers(fields: str) -> dict[str, str]:
    """``user=alice uptime=61.2 ...`` (a marker line after the marker) as a dict."""
    return dict(item.split("=", 1) for item in fields.split() if "=" in item)


def images_dir() -> Path:
    return paths.cache_dir() / "images"


# -- what goes in ----------------------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    """The host's apt lists of Debian 12 for one architecture: the lines of a sources.list
    naming them as the host does, and the list files (the guest is built from exactly
    these, so what was resolved is what gets installed)."""

    lines: tuple[str, ...]
    files: tuple[Path, ...]


def _data() -> Traversable:
    return resources.files("vmdesk.images").joinpath("desktop")


def _data_files(node: Traversable | None = None, prefix: str = "") -> list[tuple[str, bytes]]:
    """The image's own files (hooks and the overlay), by path, in a stable order."""
    found: list[tuple[str, bytes]] = []
    for child in sorted((node or _data()).iterdir(), key=lambda c: c.name):
        name = f"{prefix}{child.name}"
        if child.is_dir():
            found += _data_files(child, f"{name}/")
        elif not child.name.endswith((".pyc", "~")):
            found.append((name, child.read_bytes()))
    return found


def recipe_key(arch: Arch, packages: list[debian.Package]) -> str:
    """What identifies a build: the recipe, the image's own files and every package version."""
    digest = hashlib.sha256(f"{RECIPE_VERSION}\n{arch}\n{DISK_SIZE}\n".encode())
    for pkg in sorted(packages, key=lambda p: p.name):
        digest.update(f"{pkg.spec}\n".encode())
    for name, data in _data_files():
        digest.update(f"{name}\n{len(data)}\n".encode() + data)
    return digest.hexdigest()[:16]


def host_sources(arch: Arch) -> Sources:
    """The host's apt lists of Debian 12's main component for ``arch``."""
    darch = debian_arch(arch)
    debian.ensure_architecture(darch)
    fields = "$(CREATED_BY) $(CODENAME) $(COMPONENT) $(ARCHITECTURE) $(REPO_URI) $(RELEASE) "
    listing = _run([_tool("apt-get"), "indextargets", "--format", fields + "$(FILENAME)"])
    chosen: dict[str, tuple[str, Path]] = {}  # a line for each list, once
    for row in listing.splitlines():
        parts = row.split()
        if len(parts) != 7 or parts[:4] != ["Packages", parts[1], "main", darch]:
            continue
        if parts[1] in CODENAMES and Path(parts[6]).is_file():
            chosen[f"deb [arch={darch}] {parts[4]} {parts[5]} main"] = (parts[1], Path(parts[6]))
    if SUITE not in {codename for codename, _ in chosen.values()}:
        raise ImageBuildError(
            f"apt on this host has no Debian 12 ({SUITE}) package lists for {darch}",
            hint=f"add {SUITE}, {SUITE}-updates and {SUITE}-security (main) to apt's sources "
            "and run `sudo apt-get update` (Debian 12 hosts have them)",
        )
    files = [f for _, packages in chosen.values() for f in _list_files(packages, darch)]
    return Sources(tuple(chosen), tuple(dict.fromkeys(files)))


def _list_files(packages: Path, darch: str) -> list[Path]:
    """A Packages list and its suite's Release files, which apt needs beside it."""
    name = packages.name
    prefix = name[: name.index(f"main_binary-{darch}_Packages")]
    release = [packages.with_name(prefix + n) for n in ("InRelease", "Release", "Release.gpg")]
    return [packages, *[p for p in release if p.is_file()]]


def _apt_options(work: Path, arch: Arch, sources: Sources) -> list[str]:
    """apt-get options that see only ``sources`` for ``arch``, with nothing installed, so
    that it resolves what a new root file system gets; nothing on the host changes."""
    darch = debian_arch(arch)
    work.mkdir(parents=True, exist_ok=True)
    (work / "sources.list").write_text("".join(f"{line}\n" for line in sources.lines))
    (work / "status").write_text("")
    (work / "empty").mkdir(exist_ok=True)
    settings = {
        "Dir::Etc::SourceList": str(work / "sources.list"),
        "Dir::Etc::SourceParts": str(work / "empty"),
        "Dir::Etc::Preferences": str(work / "status"),  # an empty file: no host pinning
        "Dir::Etc::PreferencesParts": str(work / "empty"),
        "Dir::State::Status": str(work / "status"),
        "Dir::Cache::pkgcache": "",  # never write apt's caches
        "Dir::Cache::srcpkgcache": "",
        "APT::Architecture": darch,
        "APT::Architectures::": darch,
        "APT::Install-Recommends": "false",
        "Debug::NoLocking": "true",
    }
    return [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]


_INST = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) ", re.MULTILINE)


def parse_simulation(text: str) -> list[debian.Package]:
    """The packages ``apt-get -s install`` would install, with their versions."""
    return [debian.Package(name, version) for name, version in _INST.findall(text)]


def resolve(arch: Arch, sources: Sources) -> list[debian.Package]:
    """Every package of the image, its dependencies and the essential set (what mmdebstrap's
    ``apt`` variant starts from), at the versions the host's lists offer now."""
    wanted = ["?essential", "apt", *PACKAGES, *ARCH_PACKAGES[arch]]
    with tempfile.TemporaryDirectory(prefix="vmdesk-apt-") as tmp:
        options = _apt_options(Path(tmp), arch, sources)
        text = _run([_tool("apt-get"), "-s", "-q", *options, "install", *wanted])
    packages = parse_simulation(text)
    if not packages:
        raise ImageBuildError(
            f"apt resolved no packages for the {IMAGE_NAME} image ({arch})",
            hint="check that `apt-get update` has run on this host",
        )
    return packages


# -- the build ---------------------------------------------------------------------------


def build(arch: Arch, *, progress: Progress | None = None, force: bool = False) -> DesktopImage:
    """Return the desktop image for ``arch``, building it first unless it is cached (a few
    minutes for the host's own architecture; much longer for another, under emulation)."""
    say = progress or (lambda _msg: None)
    say(f"resolving Debian {SUITE} packages for {arch}")
    try:
        sources = host_sources(arch)
        packages = resolve(arch, sources)
    except HostToolMissing:
        cached = _cached(arch)
        if cached and not force:  # no apt here, but an earlier build is still good
            return load(cached[0])
        raise
    key = recipe_key(arch, packages)
    target = images_dir() / f"{IMAGE_NAME}-{arch}-{key}"
    if (target / "manifest.json").is_file() and not force:
        return load(target)
    _check_builder(arch)  # only building needs root, mmdebstrap and the disk tools
    images_dir().mkdir(parents=True, exist_ok=True)
    with _build_lock(arch):  # a concurrent build of the same image finishes first
        if (target / "manifest.json").is_file() and not force:
            return load(target)
        with tempfile.TemporaryDirectory(prefix=".build-desktop-", dir=images_dir()) as tmp:
            try:
                out = _build_into(Path(tmp), arch, sources, packages, key, say)
            finally:  # never delete what an interrupted mmdebstrap left mounted in its tree
                _unmount_below(Path(tmp))
            if target.exists():  # a forced rebuild replaces the old one
                shutil.rmtree(target)
            out.rename(target)  # atomic: the cache never holds a half-built image
    # Older builds are superseded; the one before stays, for a VM made from it meanwhile
    # (a VM's library keeps its own link to the disk it uses).
    for stale in [d for d in _cached(arch) if d != target][1:]:
        shutil.rmtree(stale, ignore_errors=True)
    say(f"built {target}")
    return load(target)


def _build_into(
    work: Path,
    arch: Arch,
    sources: Sources,
    packages: list[debian.Package],
    key: str,
    say: Progress,
) -> Path:
    """Build the image in ``work``; returns the directory to move into the cache."""
    started = time.monotonic()
    ids = image_ids(key)
    root, made = work / "root", work / "made"
    root.mkdir()
    made.mkdir()
    say(f"installing {len(packages)} Debian packages with mmdebstrap")
    _bootstrap(arch, sources, packages, root, made, ids, say)
    installed = _installed(made / "packages.tsv")
    _check_installed(packages, installed)
    release = _kernel_release((made / "boot.txt").read_text())
    out = work / "image"
    out.mkdir()
    disk_file = f"{IMAGE_NAME}-{arch}-{key}.qcow2"
    say("writing the GPT disk: EFI system partition and ext4 root file system")
    raw = work / "disk.raw"
    assemble(arch, root, made / "boot.efi", raw, ids)
    shutil.rmtree(root)
    say("compressing the disk into a qcow2 image")
    _qcow2(raw, out / disk_file)
    manifest = {
        "name": IMAGE_NAME,
        "arch": arch,
        "recipe_version": RECIPE_VERSION,
        "key": key,
        "disk": disk_file,
        "format": "qcow2",
        "sha256": _sha256(out / disk_file),  # the same packages give the same disk
        "virtual_size": DISK_SIZE,
        "kernel_release": release,
        "serial_console": SERIAL_CONSOLE[arch],
        "boot_loader": f"EFI/BOOT/{EFI_BOOT_FILE[arch]}",
        "root_uuid": str(ids.root_fs),
        "sources": list(sources.lines),
        "requested": [*PACKAGES, *ARCH_PACKAGES[arch]],
        "packages": installed,
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


@dataclass(frozen=True)
class ImageIds:
    """The disk's identifiers, derived from the build's key: the same inputs give the same
    disk, and a different build never shares an id with another."""

    disk: uuid.UUID
    esp: uuid.UUID
    root: uuid.UUID
    root_fs: uuid.UUID
    esp_serial: str  # the FAT volume id, XXXXXXXX

    @property
    def esp_volume(self) -> str:
        """The volume id as /etc/fstab and blkid write it: XXXX-XXXX."""
        return f"{self.esp_serial[:4]}-{self.esp_serial[4:]}"


def image_ids(key: str) -> ImageIds:
    def one(what: str) -> uuid.UUID:
        return uuid.uuid5(_UUIDS, f"{key}/{what}")

    serial = hashlib.sha256(f"{key}/esp-serial".encode()).hexdigest()[:8].upper()
    return ImageIds(one("disk"), one("esp"), one("root"), one("root-fs"), serial)


def _bootstrap(
    arch: Arch,
    sources: Sources,
    packages: list[debian.Package],
    root: Path,
    made: Path,
    ids: ImageIds,
    say: Progress,
) -> None:
    """mmdebstrap into ``root``; the customize hook leaves the boot loader and the
    installed packages' list in ``made``."""
    build_start = int(time.time()) - 1
    env = {
        **os.environ,
        "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH),
        "VMDESK_BUILD_START": str(build_start),
        "VMDESK_OVERLAY": str(made.parent / "overlay"),
        "VMDESK_ROOT_UUID": str(ids.root_fs),
        "VMDESK_ESP_UUID": ids.esp_volume,
        "VMDESK_CONSOLE": SERIAL_CONSOLE[arch],
        "VMDESK_GRUB_TARGET": GRUB_TARGET[arch],
        "VMDESK_OUT": str(made),
    }
    hooks = _copy_data(made.parent)
    argv = mmdebstrap_argv(arch, sources, packages, root, hooks)
    log = images_dir() / f"{IMAGE_NAME}-{arch}.log"
    with log.open("w") as out, contextlib.ExitStack() as stack:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        # A build interrupted here stops mmdebstrap too; TERM lets it unmount what it
        # mounted in the tree (/proc, /sys, /dev).
        stack.callback(_stop, proc)
        assert proc.stderr is not None
        for line in proc.stderr:
            out.write(line)
            if line.startswith(_STEPS):
                say(line[3:].strip().rstrip("."))
        returncode = proc.wait()
    if returncode != 0:
        raise ImageBuildError(
            f"mmdebstrap failed (exit {returncode}): {_last_error(log)}",
            hint=f"its whole output is in {log}; a package that cannot be downloaded any "
            "more means apt's lists are old: run `sudo apt-get update` and build again",
        )
    # mmdebstrap's cleanup (after the hook, which did the same) changed a few folders.
    clamp_times(root, build_start)


def clamp_times(root: Path, since: float) -> None:
    """Give what changed in ``root`` since ``since`` the time SOURCE_DATE_EPOCH."""
    for directory, dirs, files in os.walk(root):
        top = [directory] if directory == str(root) else []
        for path in [*top, *(os.path.join(directory, name) for name in [*dirs, *files])]:
            if os.lstat(path).st_mtime >= since:
                os.utime(path, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH), follow_symlinks=False)


# mmdebstrap's progress lines worth showing (the others are its checks and its hooks)
_STEPS = ("I: downloading", "I: extracting", "I: installing", "I: cleaning", "I: success")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _unmount_below(directory: Path) -> None:
    """Lazily unmount every mount point inside ``directory``, deepest first."""
    inside = f"{os.path.realpath(directory)}/"
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    points = [m.split()[1].replace("\\040", " ") for m in mounts if len(m.split()) > 1]
    for point in sorted((p for p in points if p.startswith(inside)), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _copy_data(work: Path) -> dict[str, Path]:
    """The hooks and the overlay as files of their own (the package's data may sit in a
    zip file, and hooks run as commands)."""
    hooks: dict[str, Path] = {}
    for name, data in _data_files():
        dest = work / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        if "/" not in name:
            hooks[name.removesuffix(".sh")] = dest
    return hooks


def mmdebstrap_argv(
    arch: Arch, sources: Sources, packages: list[debian.Package], root: Path, hooks: dict[str, Path]
) -> list[str]:
    """mmdebstrap's command line: the packages at their resolved versions, from the host's
    apt lists (copied in, so it runs no `apt-get update` of its own), into ``root``."""
    lists = " ".join(shlex.quote(str(f)) for f in sources.files)
    copy_lists = f'mkdir -p "$1/var/lib/apt/lists" && cp {lists} "$1/var/lib/apt/lists/"'
    return [
        _tool("mmdebstrap"),
        "--variant=apt",
        f"--architectures={debian_arch(arch)}",
        "--mode=root",
        "--format=directory",
        "--skip=update",
        '--aptopt=Acquire::Languages "none"',
        *[f"--dpkgopt={option}" for option in DPKG_EXCLUDES],
        f"--setup-hook={copy_lists}",
        f'--essential-hook=sh {shlex.quote(str(hooks["essential"]))} "$1"',
        f'--customize-hook=sh {shlex.quote(str(hooks["customize"]))} "$1"',
        "--include=" + ",".join(p.spec for p in packages),
        SUITE,
        str(root),
        *sources.lines,
    ]


def _last_error(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    errors = [line for line in lines if line.startswith(("E:", "error", "dpkg: error"))]
    return (errors or [line for line in lines if line] or ["no output"])[-1]


def _installed(listing: Path) -> list[str]:
    """``name=version`` of every installed package (dpkg-query's list from the hook)."""
    rows = [line.split("\t") for line in listing.read_text().splitlines() if line]
    return sorted(f"{row[0]}={row[1]}" for row in rows)


def _check_installed(packages: list[debian.Package], installed: list[str]) -> None:
    wanted = sorted(p.spec for p in packages)
    if wanted != installed:
        extra = sorted(set(installed) - set(wanted))
        missing = sorted(set(wanted) - set(installed))
        raise ImageBuildError(
            "mmdebstrap installed other packages than were resolved (extra: "
            f"{', '.join(extra[:5]) or 'none'}; missing: {', '.join(missing[:5]) or 'none'})",
            hint="report this: the image would not match its recorded package versions",
        )


def _kernel_release(boot_listing: str) -> str:
    releases = sorted(n.removeprefix("vmlinuz-") for n in boot_listing.split() if
                      n.startswith("vmlinuz-"))  # fmt: skip
    if len(releases) != 1:
        raise ImageBuildError(f"expected one kernel in /boot, found {releases or 'none'}")
    return releases[0]


# -- the disk ----------------------------------------------------------------------------


def partition_table(arch: Arch, ids: ImageIds, root_sectors: int) -> str:
    """sfdisk's script for the disk: the ESP at 1 MiB, the root partition after it."""
    esp_start, esp_sectors = MIB // 512, ESP_MIB * MIB // 512
    return "\n".join(
        [
            "label: gpt",
            f"label-id: {str(ids.disk).upper()}",
            "unit: sectors",
            "first-lba: 2048",
            "sector-size: 512",
            "",
            f"start={esp_start}, size={esp_sectors}, type={ESP_TYPE}, "
            f'uuid={str(ids.esp).upper()}, name="EFI System Partition"',
            f"start={esp_start + esp_sectors}, size={root_sectors}, type={ROOT_TYPE[arch]}, "
            f'uuid={str(ids.root).upper()}, name="root"',
            "",
        ]
    )


def assemble(arch: Arch, root: Path, boot_efi: Path, disk: Path, ids: ImageIds) -> None:
    """Write the whole disk into the sparse file ``disk``: GPT, ESP and root file system,
    each straight at its offset (no loop device, no mount)."""
    root_offset = MIB + ESP_MIB * MIB
    # The backup GPT takes the last 33 sectors: the root partition ends 1 MiB before.
    root_bytes = DISK_SIZE - root_offset - MIB
    with disk.open("wb") as f:
        f.truncate(DISK_SIZE)
    _run([_tool("sfdisk", "fdisk"), "--quiet", str(disk)],
         stdin=partition_table(arch, ids, root_bytes // 512))  # fmt: skip
    # E2FSPROGS_FAKE_TIME is the file system's own time (and each file's creation time);
    # mtools reads SOURCE_DATE_EPOCH for the times of the directories it makes.
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": str(SOURCE_DATE_EPOCH),
           "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}  # fmt: skip
    _run([_tool("mkfs.ext4", "e2fsprogs"), "-q", "-F", "-t", "ext4", "-L", "debian-root",
          "-U", str(ids.root_fs), "-E",
          f"offset={root_offset},nodiscard,root_owner=0:0,hash_seed={ids.root_fs}",
          "-d", str(root), str(disk), f"{root_bytes // 1024}k"], env=env)  # fmt: skip
    _settle_times(root, f"{disk}?offset={root_offset}", disk.parent / "times.debugfs")
    esp = f"{disk}@@{MIB}"
    _run([_tool("mformat", "mtools"), "-i", esp, "-F", "-T", str(ESP_MIB * MIB // 512),
          "-h", "64", "-s", "32", "-v", "ESP", "-N", ids.esp_serial, "::"], env=env)  # fmt: skip
    _run([_tool("mmd", "mtools"), "-i", esp, "::/EFI", "::/EFI/BOOT"], env=env)
    os.utime(boot_efi, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH))
    _run([_tool("mcopy", "mtools"), "-m", "-i", esp, str(boot_efi),
          f"::/EFI/BOOT/{EFI_BOOT_FILE[arch]}"], env=env)  # fmt: skip


def _settle_times(root: Path, filesystem: str, script: Path) -> None:
    """Give every file of the new file system the same access and change time.

    ``mkfs.ext4 -d`` copies them from the tree, where they are the build's (the kernel sets
    a change time, reading a file its access time); modification times are already
    reproducible. debugfs sets them, about 2 s for the whole tree."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(SOURCE_DATE_EPOCH))
    with script.open("w") as out:
        for path in _tree_paths(root):
            for field in ("atime", "ctime"):
                out.write(f'sif "{path}" {field} {stamp}\n')
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": str(SOURCE_DATE_EPOCH)}  # its write time
    done = subprocess.run([_tool("debugfs", "e2fsprogs"), "-w", "-f", str(script), filesystem],
                          capture_output=True, text=True, check=False, env=env)  # fmt: skip
    errors = [line for line in done.stderr.splitlines() if not line.startswith("debugfs ")]
    if done.returncode != 0 or errors:
        first = errors[0] if errors else f"exit {done.returncode}"
        raise ImageBuildError(
            f"debugfs could not set the files' times: {first}",
            hint="report this; e2fsprogs 1.47 is what Debian 12 has",
        )
    script.unlink()


def _tree_paths(root: Path) -> Iterator[str]:
    """Every path in ``root`` as the file system sees it (``/``, ``/etc``...), except those
    debugfs cannot quote (none in Debian's packages)."""
    yield "/"
    for directory, dirs, files in os.walk(root):
        inside = "/" + os.path.relpath(directory, root) if directory != str(root) else ""
        for name in [*dirs, *files]:
            if '"' not in name and "\n" not in name:
                yield f"{inside}/{name}"


def _qcow2(raw: Path, dest: Path) -> None:
    """zstd-compressed qcow2: about a third of the used size, and quick to read back."""
    _run([_tool("qemu-img", "qemu-utils"), "convert", "-q", "-f", "raw", "-O", "qcow2", "-c",
          "-o", "compression_type=zstd", str(raw), str(dest)])  # fmt: skip
    raw.unlink()


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# -- the cache ---------------------------------------------------------------------------


def load(directory: Path) -> DesktopImage:
    manifest = json.loads((directory / "manifest.json").read_text())
    return DesktopImage(
        arch=manifest["arch"],
        directory=directory,
        disk_file=manifest["disk"],
        kernel_release=manifest["kernel_release"],
        packages=tuple(manifest["packages"]),
    )


def _cached(arch: Arch) -> list[Path]:
    """Complete cached builds for ``arch``, newest first."""
    found = [
        d for d in images_dir().glob(f"{IMAGE_NAME}-{arch}-*") if (d / "manifest.json").is_file()
    ]
    return sorted(found, key=lambda d: d.stat().st_mtime, reverse=True)


def find(arch: Arch) -> DesktopImage:
    """The newest built image for ``arch`` without building (clear error when none)."""
    cached = _cached(arch)
    if not cached:
        raise NotFound(
            f"no {IMAGE_NAME} image for {arch} has been built yet",
            hint=f"run `vmdesk image build {IMAGE_NAME} --arch {arch}` (a few minutes)",
        )
    return load(cached[0])


@contextlib.contextmanager
def _build_lock(arch: Arch) -> Iterator[None]:
    with (images_dir() / f".{IMAGE_NAME}-{arch}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# -- the host ----------------------------------------------------------------------------

_SBIN = ("/usr/sbin", "/sbin")
# binfmt_misc entries that run another architecture's programs through qemu-user-static
_BINFMT = Path("/proc/sys/fs/binfmt_misc")


def _tool(name: str, package: str | None = None) -> str:
    found = shutil.which(name) or next(
        (f"{d}/{name}" for d in _SBIN if Path(f"{d}/{name}").is_file()), None
    )
    if found is None:
        raise HostToolMissing(
            f"{name} was not found on this host",
            hint=f"install it: `sudo apt-get install {package or name}` (or `make setup`)",
        )
    return found


def _run(argv: list[str], *, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(
            argv,
            input=stdin if stdin is not None else "",  # never the terminal's
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip().splitlines()
        raise ImageBuildError(
            f"`{Path(argv[0]).name}` failed: {detail[-1] if detail else f'exit {exc.returncode}'}",
            hint=f"the command was: {shlex.join(argv)[:300]}",
        ) from exc
    return done.stdout


def _check_builder(arch: Arch) -> None:
    """What the build needs that is not a tool: root (mmdebstrap's root mode is the one
    that makes a directory tree with the right owners), and for another architecture
    qemu-user-static registered with the kernel."""
    if os.geteuid() != 0:
        cache, vmdesk = shlex.quote(str(paths.cache_dir())), shutil.which("vmdesk") or "vmdesk"
        raise ImageBuildError(
            f"building the {IMAGE_NAME} image needs root (the image's files belong to root "
            "and other users; mmdebstrap installs them that way only as root)",
            # sudo sets HOME to root's: naming the cache puts the image in this user's
            hint=f"build it once as root into this user's cache: `sudo env "
            f"VMDESK_CACHE={cache} {vmdesk} "
            f"image build {IMAGE_NAME} --arch {arch}`; VMs are then made from it as this user",
        )
    for name, package in (("mmdebstrap", None), ("sfdisk", "fdisk"), ("mkfs.ext4", "e2fsprogs"),
                          ("mformat", "mtools"), ("qemu-img", "qemu-utils")):  # fmt: skip
        _tool(name, package)
    if arch != host_arch():
        ensure_binfmt(arch)


def _binfmt_conf(name: str) -> Path:
    """qemu-user-static's entry for systemd-binfmt."""
    return Path(f"/usr/lib/binfmt.d/{name}.conf")


def ensure_binfmt(arch: Arch) -> None:
    """Make the kernel run ``arch``'s programs through qemu-user-static (mmdebstrap runs
    the guest's maintainer scripts): registered from the package's own binfmt.d entry
    when no service did it (containers have no systemd-binfmt)."""
    name = f"qemu-{arch}"
    entry = _BINFMT / name
    if entry.is_file() and entry.read_text().startswith("enabled"):
        return
    conf = _binfmt_conf(name)
    hint = "install qemu-user-static (`sudo apt-get install qemu-user-static`)"
    if not conf.is_file():
        raise HostToolMissing(f"{arch} programs cannot run on this host", hint=hint)
    if not (_BINFMT / "register").exists():
        _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(_BINFMT)])
    if not entry.exists():
        line = next(li for li in conf.read_text().splitlines() if li.startswith(":"))
        (_BINFMT / "register").write_text(line)
    if not entry.read_text().startswith("enabled"):
        entry.write_text("1")
