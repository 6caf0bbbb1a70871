"""New VMs made from a pulled image (a catalog image, a URL with a digest, or a file): the
disk is a qcow2 overlay on the image, taken into the library's bases, grown to the size
asked for, and a cloud-init seed on a read-only CD gives the guest its user, keys and name.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmdesk.core.errors import ConfigError, Problem
from vmdesk.core.host_paths import expand
from vmdesk.core.library import Library
from vmdesk.service.settings import Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vmdesk.core.config import VMConfig
    from vmdesk.images.cloud_init import SeedSettings

DISK = "disks/disk0.qcow2"
RAW_DISK = "disks/disk0.raw"  # for the vz engine, which reads raw images only
SEED = "cloud-init/seed.iso"  # the NoCloud seed, attached as a read-only CD
_SEED_KEYS = ("user", "ssh_keys", "password", "timezone", "packages", "cloud_init")
PullProgress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class Plan:
    image: Path  # the pulled (or local) image, complete and checked
    size: int | None  # the disk's size; None: the image's own
    seed: bool  # whether the VM gets a cloud-init seed
    settings: Settings
    raw: bool = False  # a raw copy of the image (vz), not a qcow2 overlay


def refuse_seed(image: str, settings: Settings) -> None:
    """A built-in guest without cloud-init (tiny-linux) can't take a user, keys or the
    rest of a seed: saying so beats a VM that silently lacks them."""
    given = [key for key in _SEED_KEYS if settings.get(key)]
    if given:
        options = ", ".join("--" + key.replace("_", "-") for key in given)
        raise ConfigError([Problem(
            given[0], f"{image} has no cloud-init, so {options} would do nothing",
            "leave them out, or use an image with cloud-init (`vmdesk image list`)",
        )])  # fmt: skip


def plan(
    ref: str,
    data: dict[str, Any],
    settings: Settings,
    progress: PullProgress | None = None,
) -> Plan:
    """Pull ``ref`` (if not cached; a built image such as debian-desktop is used from the
    cache) and make ``data`` boot its disk through UEFI; the disk and the seed are added to
    ``data`` now and made by :func:`made`."""
    from vmdesk.core.arch import default_arch, parse_arch
    from vmdesk.core.units import parse_size
    from vmdesk.service import images

    arch = parse_arch(str(data.get("arch") or settings.get("arch") or default_arch()))
    if ref in images.BUILT_DISKS:  # built on this host (`vmdesk image build`), with cloud-init
        path: Path | None = images.built_disk(ref, arch)
        has_cloud_init = True
    else:
        path = None
        source = images.source(ref, arch, settings.get("digest"))  # refused before a download
        has_cloud_init = source.entry.cloud_init if source.entry else False
    seed = has_cloud_init or any(settings.get(k) for k in _SEED_KEYS)
    if seed:
        _check_seed(str(data.get("name") or "vm"), settings)  # a typo must not cost a download
    if path is None:
        path = images.pull(ref, arch, settings.get("digest"), progress=progress)
    data["arch"] = arch
    data.setdefault("boot", {"kind": "uefi"})
    raw = (settings.get("engine") or data.get("engine")) == "vz"
    disk = {"file": RAW_DISK, "format": "raw"} if raw else {"file": DISK, "format": "qcow2"}
    data.setdefault("disks", []).insert(0, disk)
    if seed:
        data.setdefault("cdroms", []).append({"file": SEED})
    size = settings.get("disk_size")
    nbytes = parse_size(size, default_unit="G") if size else None
    return Plan(path, nbytes, seed, settings, raw)


@contextlib.contextmanager
def made(library: Library, chosen: Plan, config: VMConfig) -> Iterator[Callable[[Path], None]]:
    """While inside: the image is a base of the library (no sweep removes it), and the
    function that fills the staged bundle with the overlay and the seed (for
    :meth:`Library.create`)."""
    from vmdesk.storage import image_bases
    from vmdesk.storage import images as disk_images

    if chosen.raw:
        yield _raw_copy(chosen, config)
        return
    with image_bases.base_for(library, chosen.image) as (backing, base):
        size = max(chosen.size or 0, base.virtual_size)

        def populate(staged: Path) -> None:
            disk_images.overlay(staged / DISK, backing, base.format, size)
            if chosen.seed:
                _write_seed(staged / SEED, config, chosen.settings)

        yield populate


def _raw_copy(chosen: Plan, config: VMConfig) -> Callable[[Path], None]:
    """A VM on vz: Virtualization.framework reads only raw images and has no overlays, so
    the image is converted to raw once (kept in the cache beside it) and each VM gets a
    copy of that, grown to its size: a clone of it on APFS and other file systems that
    clone, a sparse copy elsewhere."""
    from vmdesk.storage import copying, image_bases
    from vmdesk.storage import images as disk_images

    raw = image_bases.raw_of(chosen.image)

    def populate(staged: Path) -> None:
        target = staged / RAW_DISK
        copying.copy(raw, target)
        if chosen.size and chosen.size > disk_images.inspect(target).virtual_size:
            disk_images.grow(target, chosen.size)
        if chosen.seed:
            _write_seed(staged / SEED, config, chosen.settings)

    return populate


def _seed_settings(
    name: str, instance_id: uuid.UUID, mac: str | None, s: Settings, password_hash: str | None
) -> SeedSettings:
    from vmdesk.images import cloud_init

    user_data = s.get("cloud_init")
    return cloud_init.SeedSettings(
        vm_name=name,
        instance_id=instance_id,
        mac=mac,
        user=s.get("user") or _default_user(),
        ssh_key_files=tuple(expand(k) for k in s.get("ssh_keys") or ()),
        password_hash=password_hash,
        timezone=s.get("timezone"),
        packages=tuple(s.get("packages") or ()),
        user_data_file=expand(user_data) if user_data else None,
    )


def _default_user() -> str:
    """The host user's name, as Lima does; root's VMs get a user of their own instead."""
    from vmdesk.images import cloud_init

    name = cloud_init.host_user_name()
    return "vmdesk" if name == "root" else name


def _check_seed(name: str, s: Settings) -> None:
    """Every problem with the seed's settings (a bad key file, user name...), found before
    anything is downloaded; the password is checked by hashing it at the end."""
    from vmdesk.images import cloud_init

    cloud_init.render(_seed_settings(name, uuid.UUID(int=0), None, s, None))


def _write_seed(path: Path, config: VMConfig, s: Settings) -> None:
    from vmdesk.images import cloud_init

    password = s.get("password")
    mac = next((n.mac for n in config.nics if n.mode != "none"), None)
    hashed = cloud_init.hash_password(password) if password else None
    path.parent.mkdir(parents=True, exist_ok=True)
    cloud_init.write_seed(_seed_settings(config.name, config.uuid, mac, s, hashed), path)


def rekey_seed(bundle_dir: Path, config: VMConfig) -> bool:
    """Give a copied VM (a clone) a seed of its own: its instance-id, name and MAC, so
    cloud-init runs its first-boot work again in it. False when it has no seed."""
    path = bundle_dir / SEED
    if not path.is_file():
        return False
    from vmdesk.images import cloud_init  # only for a VM with a seed: it loads pycdlib

    mac = next((n.mac for n in config.nics if n.mode != "none"), None)
    files = cloud_init.rekeyed(cloud_init.read_seed(path), config.name, config.uuid, mac)
    cloud_init.write_files(files, path)
    return True
