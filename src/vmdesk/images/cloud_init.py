"""cloud-init NoCloud seeds: a small ISO 9660 image labelled ``cidata`` holding ``user-data``,
``meta-data`` and ``network-config``, which cloud-init in a stock cloud image finds at boot.

The texts are pure functions of :class:`SeedSettings` (plus the key and user-data files it
names), so the same settings give the same texts (the ISO around them carries its
creation time). The instance-id is the VM's UUID: the seed
is the same on every boot, so cloud-init runs its first-boot modules once; a clone has a new
UUID, so they run again there.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import io
import re
import shutil
import subprocess
import uuid
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vmdesk.core import macs
from vmdesk.core.atomic import write_with
from vmdesk.core.errors import (
    BundleError,
    ConfigError,
    HostToolMissing,
    ImageBuildError,
    NotFound,
    Problem,
    VMDeskError,
)

TYPE_CHECKING = False  # pycdlib is imported where an ISO is written or read (15 ms)
if TYPE_CHECKING:
    import pycdlib

LABEL = "cidata"  # what NoCloud looks for (it accepts CIDATA too)
USER_DATA, META_DATA, NETWORK_CONFIG = "user-data", "meta-data", "network-config"
# Level-1 ISO 9660 names (8.3, upper case) for readers without Joliet or Rock Ridge; Linux
# reads the Rock Ridge names, Windows the Joliet ones: both give the exact lower-case names.
ISO9660_NAMES = {USER_DATA: "USERDATA.;1", META_DATA: "METADATA.;1", NETWORK_CONFIG: "NETCONF.;1"}

CLOUD_CONFIG_HEADER = "#cloud-config\n"
# What Debian's and Ubuntu's cloud images give their default user (Debian's cloud.cfg):
# cloud-init creates any of these groups that a guest lacks.
DEFAULT_GROUPS = ("adm", "audio", "cdrom", "dialout", "dip", "floppy", "netdev", "plugdev",
                  "sudo", "video")  # fmt: skip
SUDO_RULE = "ALL=(ALL) NOPASSWD:ALL"
SHELL = "/bin/bash"

# useradd's own rule (shadow's is_valid_user_name, Debian's NAME_REGEX), without the
# trailing "$" of Samba machine accounts.
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_SHA512_CRYPT = re.compile(r"^\$6\$(rounds=[0-9]+\$)?[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}$")
_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_:=~-]*$")  # a name, optionally =version
_TIMEZONE = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")
_KEY_TYPE = re.compile(r"^[a-z0-9][a-z0-9.@-]*$")
_MAX_INPUT_BYTES = 1 << 20  # key and user-data files are small; this stops a disk image


def host_user_name() -> str:
    """The host user's login name: the guest user's default, so ``ssh VM`` just works."""
    return getpass.getuser()


def hostname_for(vm_name: str) -> str:
    """A VM name as a host name (one DNS label): ``Web_Server.2`` -> ``web-server-2``."""
    return re.sub(r"[^a-z0-9-]+", "-", vm_name.lower()).strip("-")[:63].strip("-")


@dataclass(frozen=True)
class SeedSettings:
    """Everything a seed says. ``mac`` is the VM's first NIC's (None: the VM has no NIC);
    ``password_hash`` is a SHA-512 crypt hash (see :func:`hash_password`), never a password.
    ``user_data_file`` is the user's own cloud-config, merged over ours (see :func:`merge`)."""

    vm_name: str
    instance_id: uuid.UUID
    mac: str | None
    user: str = field(default_factory=host_user_name)
    ssh_key_files: tuple[Path, ...] = ()
    password_hash: str | None = None
    timezone: str | None = None
    packages: tuple[str, ...] = ()
    user_data_file: Path | None = None

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError(problems, context="cloud-init seed")
        if self.mac is not None:  # frozen: the normal form replaces what was given
            object.__setattr__(self, "mac", macs.normalise(self.mac))

    @property
    def hostname(self) -> str:
        return hostname_for(self.vm_name)


def _problems(settings: SeedSettings) -> list[Problem]:
    found = []
    if not hostname_for(settings.vm_name):
        found.append(
            Problem(
                "vm_name",
                f"{settings.vm_name!r} gives no host name",
                "use a VM name with at least one letter or digit",
            )
        )
    if not _USER_NAME.match(settings.user):
        found.append(
            Problem(
                "user",
                f"{settings.user!r} is not a valid Linux user name",
                "use lower-case letters, digits, '-' and '_', starting with a letter or '_', "
                "at most 32 characters",
            )
        )
    if settings.mac is not None:
        try:
            macs.normalise(settings.mac)
        except VMDeskError as exc:
            found.append(Problem("mac", exc.message, exc.hint or ""))
    if settings.password_hash is not None and not _SHA512_CRYPT.match(settings.password_hash):
        found.append(
            Problem(
                "password_hash",
                "is not a SHA-512 crypt hash ($6$...)",
                "hash the password with hash_password(), never store it",
            )
        )
    if settings.timezone is not None and not _known_timezone(settings.timezone):
        found.append(
            Problem(
                "timezone",
                f"{settings.timezone!r} is not a time zone",
                "use an IANA name such as Europe/Paris or UTC",
            )
        )
    bad = [p for p in settings.packages if not _PACKAGE.match(p)]
    if bad:
        found.append(
            Problem(
                "packages",
                f"not package names: {', '.join(map(repr, bad))}",
                "name each package on its own, e.g. htop or htop=3.2.2-2",
            )
        )
    return found


def _refused(field_name: str, message: str, hint: str) -> ConfigError:
    return ConfigError([Problem(field_name, message, hint)], context="cloud-init seed")


def _known_timezone(name: str) -> bool:
    if not _TIMEZONE.match(name):
        return False
    known = zoneinfo.available_timezones()
    return name in known if known else True  # a host without a tz database cannot tell


def hash_password(password: str) -> str:
    """``password`` as a SHA-512 crypt hash with a random salt, for a guest's /etc/shadow.

    Python has no SHA-crypt outside the ``crypt`` module (deprecated, gone in 3.13), so the
    host's OpenSSL makes it; the password goes through a pipe, never the command line."""
    if not password or "\n" in password or "\r" in password:
        raise _refused("password", "is empty or spans lines", "type the password on one line")
    openssl = shutil.which("openssl")
    hint = "install OpenSSL 1.1.1 or later (Debian: apt-get install openssl)"
    if openssl is None:
        raise HostToolMissing("openssl was not found on this host", hint=hint)
    done = subprocess.run(
        [openssl, "passwd", "-6", "-stdin"],
        input=password + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    hashed = done.stdout.strip()
    if done.returncode != 0 or not _SHA512_CRYPT.match(hashed):
        # LibreSSL (macOS's openssl) has no -6.
        raise HostToolMissing(f"`{openssl} passwd -6` cannot make SHA-512 hashes", hint=hint)
    return hashed


@dataclass(frozen=True)
class SeedFiles:
    """The three files of a seed, as text. ``network_config`` is None only for a seed read
    back that has none (NoCloud makes it optional; seeds made here always have one)."""

    user_data: str
    meta_data: str
    network_config: str | None

    def by_name(self) -> dict[str, str]:
        named = {USER_DATA: self.user_data, META_DATA: self.meta_data}
        if self.network_config is not None:
            named[NETWORK_CONFIG] = self.network_config
        return named


def render(settings: SeedSettings) -> SeedFiles:
    """The seed's texts; reads the key files and the user's user-data that ``settings`` name."""
    return SeedFiles(user_data(settings), meta_data(settings), network_config(settings))


def _dump(data: object) -> str:
    # Block style, our key order, no line folding: stable and readable in `vmdesk show`.
    return yaml.safe_dump(
        data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 16
    )


def user_data(settings: SeedSettings) -> str:
    """``#cloud-config`` for the guest user: sudo without a password, a shell, the SSH keys;
    a locked password unless one is set, and password logins over SSH only with one."""
    user: dict[str, Any] = {
        "name": settings.user,
        "groups": list(DEFAULT_GROUPS),
        "sudo": SUDO_RULE,
        "shell": SHELL,
        "lock_passwd": settings.password_hash is None,
    }
    if settings.password_hash is not None:
        user["passwd"] = settings.password_hash
    keys = read_public_keys(settings.ssh_key_files)
    if keys:
        user["ssh_authorized_keys"] = list(keys)
    ours: dict[str, Any] = {"users": [user], "ssh_pwauth": settings.password_hash is not None}
    if settings.timezone is not None:
        ours["timezone"] = settings.timezone
    if settings.packages:
        ours["packages"] = list(settings.packages)
    if settings.user_data_file is not None:
        ours = merge(ours, read_user_data(settings.user_data_file))
    return CLOUD_CONFIG_HEADER + _dump(ours)


def merge(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """``theirs`` over ``ours``: their value wins for every key, except ``users``, whose
    entries follow ours (so their extra users never replace the VM's own user)."""
    merged = {**ours, **{k: v for k, v in theirs.items() if k != "users"}}
    if "users" in theirs:
        merged["users"] = [*ours.get("users", []), *theirs["users"]]
    return merged


def meta_data(settings: SeedSettings) -> str:
    return _dump({"instance-id": str(settings.instance_id), "local-hostname": settings.hostname})


def network_config(settings: SeedSettings) -> str:
    """Network config version 2: DHCP on the NIC with the VM's MAC address.

    cloud-init 22.4 hands v2 through unchanged only to netplan; its ENI, networkd and
    sysconfig renderers (Debian 12 uses ENI or networkd) ignore ``match: name`` globs and
    ``driver``, and name the interface after the config's key, but look a ``macaddress`` up
    among the present NICs. So the MAC is the one match that works everywhere."""
    if settings.mac is None:  # no NIC: leave the guest's networking alone
        return _dump({"config": "disabled"})
    nic = {"match": {"macaddress": settings.mac}, "dhcp4": True}
    return _dump({"version": 2, "ethernets": {"nic0": nic}})


def _read_input(path: Path, what: str) -> str:
    """A small text file the user named, or a ConfigError that names it."""
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise _refused(what, f"{path} does not exist", "check the path") from None
    except OSError as exc:
        raise _refused(
            what, f"cannot read {path}: {exc.strerror}", "check the file's permissions"
        ) from None
    if len(data) > _MAX_INPUT_BYTES:
        raise _refused(
            what, f"{path} is too big for a {what} file", "name the small text file you meant"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _refused(what, f"{path} is not text", "name the small text file you meant") from None


def read_public_keys(paths: tuple[Path, ...]) -> tuple[str, ...]:
    """The SSH public keys in ``paths`` (``.pub`` or authorized_keys-style files, one key a
    line), in order; a file that holds a private key or anything else is refused."""
    keys: list[str] = []
    for path in paths:
        found = [line.strip() for line in _read_input(path, "ssh_key_files").splitlines()]
        found = [line for line in found if line and not line.startswith("#")]
        if not found:
            raise _refused("ssh_key_files", f"{path} holds no SSH public key", _PUBLIC_KEY_HINT)
        for line in found:
            problem = _key_problem(line, path)
            if problem is not None:
                raise ConfigError([problem], context="cloud-init seed")
        keys += [k for k in found if k not in keys]
    return tuple(keys)


_PUBLIC_KEY_HINT = (
    "name a public key file such as ~/.ssh/id_ed25519.pub (`ssh-keygen -y -f PRIVATE_KEY` "
    "prints the public half of a private key)"
)


def _key_problem(line: str, path: Path) -> Problem | None:
    """None when ``line`` is ``TYPE BASE64 [COMMENT]`` whose blob names the same type."""
    if "PRIVATE KEY" in line or line.startswith("PuTTY-User-Key-File"):
        public = Path(f"{path}.pub")
        hint = (
            f"that is a private key, which must never leave this machine: name {public}"
            if public.exists()
            else _PUBLIC_KEY_HINT
        )
        return Problem("ssh_key_files", f"{path} is a private key, not a public one", hint)
    if line.startswith("---- BEGIN SSH2 PUBLIC KEY"):
        return Problem(
            "ssh_key_files",
            f"{path} is an RFC 4716 (SSH2) public key",
            f"convert it with `ssh-keygen -i -f {path}` and name the result",
        )
    parts = line.split()
    if len(parts) >= 2 and _KEY_TYPE.match(parts[0]) and _blob_type(parts[1]) == parts[0]:
        return None
    return Problem("ssh_key_files", f"{path} is not an SSH public key", _PUBLIC_KEY_HINT)


def _blob_type(text: str) -> str | None:
    """The key type an OpenSSH key blob starts with (a uint32 length, then the name)."""
    try:
        blob = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    size = int.from_bytes(blob[:4], "big")
    if len(blob) < 4 + size or size > 64:
        return None
    return blob[4 : 4 + size].decode("ascii", "replace")


def read_user_data(path: Path) -> dict[str, Any]:
    """The user's own cloud-config from ``path``: a YAML mapping (an empty file adds nothing);
    ``users``, when given, must be a list, since its entries are added to ours."""
    text = _read_input(path, "user_data_file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise _refused(
            "user_data_file",
            f"{path} is not valid YAML{at}",
            "fix the YAML, or check it with `cloud-init schema -c`",
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _refused(
            "user_data_file",
            f"{path} is not a YAML mapping of cloud-config keys",
            "write keys such as `packages: [htop]` (a shell script or MIME multipart file "
            "cannot be merged)",
        )
    if "users" in data and not isinstance(data["users"], list):
        raise _refused(
            "user_data_file",
            f"`users` in {path} is not a list",
            "write users as a list: `users: [{name: alice}]`",
        )
    return {str(key): value for key, value in data.items()}


def write_seed(settings: SeedSettings, path: Path) -> SeedFiles:
    """Write the seed for ``settings`` to ``path`` atomically (readers never see half an
    image); the file is private to this user, as it may hold a password hash."""
    files = render(settings)
    write_files(files, path)
    return files


def rekeyed(files: SeedFiles, vm_name: str, instance_id: uuid.UUID, mac: str | None) -> SeedFiles:
    """The seed of a copy of a VM (a clone): its own instance-id, so that cloud-init runs
    its first-boot work again (new SSH host keys, the new name), its hostname and its MAC;
    the user, keys and the rest stay as they were."""
    settings = SeedSettings(vm_name=vm_name, instance_id=instance_id, mac=mac)
    return SeedFiles(files.user_data, meta_data(settings), network_config(settings))


def write_files(files: SeedFiles, path: Path) -> None:
    """Write a seed image holding ``files`` to ``path`` atomically (private to this user)."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(
        interchange_level=1,
        vol_ident=LABEL,
        app_ident_str="VM-Desk cloud-init seed",
        joliet=3,
        rock_ridge="1.09",
    )
    for name, text in files.by_name().items():
        data = text.encode("utf-8")
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            f"/{ISO9660_NAMES[name]}",
            rr_name=name,
            joliet_path=f"/{name}",
        )
    try:
        write_with(path, iso.write_fp)
    except OSError as exc:
        raise ImageBuildError(
            f"cannot write the cloud-init seed {path}: {exc.strerror}",
            hint="check that its folder exists and is writable",
        ) from exc
    finally:
        iso.close()


def read_seed(path: Path) -> SeedFiles:
    """The files of the NoCloud seed image at ``path`` (one made here or elsewhere), by their
    Rock Ridge names, else Joliet, else the level-1 ISO 9660 names."""
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException

    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(path))
    except FileNotFoundError:
        raise NotFound(f"no cloud-init seed at {path}", hint="rebuild the VM's seed") from None
    except (OSError, PyCdlibException) as exc:
        raise BundleError(
            f"{path} is not an ISO image: {exc}", hint="rebuild the VM's cloud-init seed"
        ) from None
    try:
        label = iso.pvd.volume_identifier.decode("ascii", "replace").strip()
        if label.lower() != LABEL:
            raise BundleError(
                f"{path} is labelled {label!r}, not {LABEL!r}",
                hint="cloud-init only reads a seed labelled cidata",
            ) from None
        texts = {name: _read_member(iso, name) for name in ISO9660_NAMES}
    finally:
        iso.close()
    user, meta, network = texts[USER_DATA], texts[META_DATA], texts[NETWORK_CONFIG]
    if user is None or meta is None:
        raise BundleError(
            f"{path} has no {USER_DATA if user is None else META_DATA}",
            hint="rebuild the VM's cloud-init seed",
        )
    return SeedFiles(user, meta, network)


def _read_member(iso: pycdlib.PyCdlib, name: str) -> str | None:
    from pycdlib.pycdlibexception import PyCdlibException

    if iso.has_rock_ridge():
        where = {"rr_path": f"/{name}"}
    elif iso.has_joliet():
        where = {"joliet_path": f"/{name}"}
    else:
        where = {"iso_path": f"/{ISO9660_NAMES[name]}"}
    out = io.BytesIO()
    try:
        iso.get_file_from_iso_fp(out, **where)
    except PyCdlibException:  # pycdlib's "not found" has no class of its own
        return None
    return out.getvalue().decode("utf-8", "replace")
