"""The VM description: one pydantic model that both engines read.

Load descriptions through :func:`from_dict` / :func:`from_json`, never by calling the model
directly: they migrate old schema versions, run the cross-field rules, and turn every
failure into one :class:`ConfigError` listing each problem with a hint.
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid as uuidlib
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from vmdesk.core import macs
from vmdesk.core.arch import default_arch
from vmdesk.core.errors import ConfigError, Problem, VMDeskError
from vmdesk.core.lookup import NAME_PATTERN  # a VM's name: the same rule as its lookup
from vmdesk.core.units import MiB, format_size, parse_size

SCHEMA_VERSION = 1
MIN_MEMORY = 64 * MiB
MAX_SHARE_TAG_BYTES = 36  # virtiofs/9p mount tags are limited to 36 bytes


def _custom(message: str, hint: str) -> PydanticCustomError:
    """A validation error whose message and hint reach the user as written."""
    return PydanticCustomError("vmdesk", message, {"hint": hint})


def _memory(value: Any) -> int:
    """Human size (or a bare number of MiB) -> MiB, the unit every hypervisor takes."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        try:
            size = parse_size(value)
        except VMDeskError as exc:
            raise _custom(exc.message, exc.hint or "") from None
        if size < MIN_MEMORY:
            raise _custom(
                f"{format_size(size)} is below the minimum of 64MiB",
                "give the VM at least 64MiB; most Linux guests want 512MiB or more",
            )
        return size // MiB
    raise _custom("must be a size such as 2GiB or 512M", "write it like 512MiB or 2GiB")


Memory = Annotated[
    int,
    BeforeValidator(_memory),
    PlainSerializer(lambda mib: format_size(mib * MiB), return_type=str),
    Field(json_schema_extra={"type": "string", "examples": ["2GiB", "512M"]}),
]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, frozen=False, defer_build=True
    )


class LinuxBoot(_Model):
    """Direct kernel boot."""

    kind: Literal["linux"] = "linux"
    kernel: str
    initrd: str | None = None
    cmdline: str = ""


class UefiBoot(_Model):
    kind: Literal["uefi"] = "uefi"
    secure_boot: bool = False


class BiosBoot(_Model):
    """Legacy BIOS (x86_64 only)."""

    kind: Literal["bios"] = "bios"
    secure_boot: bool = False  # present only so "secure boot on BIOS" is a clear error


Boot = Annotated[LinuxBoot | UefiBoot | BiosBoot, Field(discriminator="kind")]


class Disk(_Model):
    file: str = Field(min_length=1, description="relative to the bundle, or absolute")
    format: Literal["qcow2", "raw"] = "qcow2"
    interface: Literal["virtio-blk", "nvme", "usb"] = "virtio-blk"
    cache: Literal["auto", "writeback", "none", "writethrough", "directsync", "unsafe"] = Field(
        default="auto", description="auto: O_DIRECT where the file system takes it"
    )
    aio: Literal["auto", "io_uring", "native", "threads"] = Field(
        default="auto", description="auto: io_uring where the host has it"
    )
    discard: bool = Field(
        default=True, description="the guest's trims and written zeroes free the host's space"
    )
    iothread: bool = Field(default=True, description="virtio-blk: its own I/O thread")
    queues: int | None = Field(
        default=None, ge=1, le=64, description="virtio-blk queues; empty: one per vCPU"
    )
    read_only: bool = False
    boot_order: int | None = Field(default=None, ge=1)


class CdRom(_Model):
    file: str = Field(min_length=1)
    boot_order: int | None = Field(default=None, ge=1)


class PortForward(_Model):
    protocol: Literal["tcp", "udp"] = "tcp"
    host_address: str = "127.0.0.1"
    host_port: int = Field(ge=1, le=65535)
    guest_port: int = Field(ge=1, le=65535)

    @field_validator("host_address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise _custom(
                f"{value!r} is not an IP address",
                "use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)",
            ) from None

    def __str__(self) -> str:
        return f"{self.protocol}:{self.host_address}:{self.host_port}:{self.guest_port}"


class Nic(_Model):
    mode: Literal["nat", "bridged", "none"] = "nat"
    mac: str | None = Field(default=None, description="generated when empty")
    forwards: list[PortForward] = Field(default_factory=list)
    bridge: str | None = Field(default=None, description="host bridge/interface (bridged)")
    boot_order: int | None = Field(
        default=None, ge=1, description="boot from the network (only when asked for)"
    )
    backend: Literal["auto", "passt", "slirp"] = Field(
        default="auto",
        description="NAT on QEMU: passt where it is installed (auto), always passt (an "
        "error without it), or QEMU's built-in slirp",
    )

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return macs.normalise(value)
        except VMDeskError as exc:
            raise _custom(exc.message, exc.hint or "") from None


class Display(_Model):
    device: Literal["virtio-gpu", "ramfb", "none"] = "virtio-gpu"
    width: int = Field(default=1280, ge=320, le=8192)
    height: int = Field(default=800, ge=200, le=8192)
    vnc: bool = True


class Input(_Model):
    usb_keyboard: bool = True
    usb_tablet: bool = True


class Serial(_Model):
    enabled: bool = True
    log: bool = True


ShareMode = Literal["auto", "virtiofs", "9p"]


class Share(_Model):
    tag: str = Field(min_length=1)
    path: str = Field(min_length=1, description="absolute host path")
    read_only: bool = False
    # auto: VirtioFS where the engine has it (on QEMU: when virtiofsd is installed), else 9p.
    # VirtioFS is faster with many small files, 9p with big ones on QEMU; 9p shares do not
    # stop the VM from saving its RAM (live snapshots, suspend) while the guest has them
    # unmounted, VirtioFS shares always do on QEMU 7.2.
    mode: ShareMode = "auto"

    @field_validator("tag")
    @classmethod
    def _tag(cls, value: str) -> str:
        if len(value.encode()) > MAX_SHARE_TAG_BYTES:
            raise _custom(
                f"tag {value!r} is {len(value.encode())} bytes; the limit is 36",
                "choose a shorter tag (it is what the guest mounts)",
            )
        if not re.fullmatch(r"[A-Za-z0-9._-]+", value):
            raise _custom(
                f"tag {value!r} may only contain letters, digits, '.', '_' and '-'",
                "choose a tag like 'src' or 'home-docs'",
            )
        return value


class UsbDevice(_Model):
    vendor_id: str
    product_id: str

    @field_validator("vendor_id", "product_id", mode="before")
    @classmethod
    def _hex4(cls, value: Any) -> str:
        text = str(value).lower().removeprefix("0x")
        if not re.fullmatch(r"[0-9a-f]{4}", text):
            raise _custom(
                f"{value!r} is not a 4-digit hex USB id",
                "find it with `lsusb` (e.g. 046d:c52b)",
            )
        return text

    def __str__(self) -> str:
        return f"{self.vendor_id}:{self.product_id}"


class VMConfig(_Model):
    """Everything about a VM that survives a restart (state is never stored here)."""

    schema_version: int = SCHEMA_VERSION
    name: str = Field(pattern=NAME_PATTERN)
    uuid: uuidlib.UUID = Field(default_factory=uuidlib.uuid4)
    engine: Literal["auto", "qemu", "vz"] = "auto"
    # The host's own architecture unless asked otherwise: the one it can accelerate.
    arch: Literal["aarch64", "x86_64"] = Field(default_factory=default_arch)
    cpus: int = Field(default=2, ge=1, le=256)
    memory: Memory = Field(default=2048, description="MiB; written as a size like 2GiB")
    boot: Boot = Field(default_factory=UefiBoot)
    disks: list[Disk] = Field(default_factory=list)
    cdroms: list[CdRom] = Field(default_factory=list)
    nics: list[Nic] = Field(default_factory=lambda: [Nic()])
    display: Display = Field(default_factory=Display)
    input: Input = Field(default_factory=Input)
    serial: Serial = Field(default_factory=Serial)
    shares: list[Share] = Field(default_factory=list)
    clipboard: bool = True
    # A qemu-ga channel (IP, OS, exec, time, quiesced snapshots) for the guest's own agent.
    guest_agent: bool = True
    # A memory balloon: freed guest memory goes back to the host, a running VM's memory
    # can be lowered live (off for guests that must keep every page, e.g. real-time ones).
    balloon: bool = True
    tpm: bool = False
    usb_devices: list[UsbDevice] = Field(default_factory=list)
    isolation: Literal["isolated", "unrestricted"] = "isolated"
    approved_paths: list[str] = Field(
        default_factory=list,
        description="host paths the user added explicitly (isolated mode allows only these)",
    )


# -- loading, with migrations and one error listing every problem ---------------------------

# schema_version N -> function that upgrades a dict from N to N + 1.
MIGRATIONS: dict[int, Any] = {
    0: lambda data: {**data, "schema_version": 1},  # 0: before the field existed
}


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Upgrade an older description to :data:`SCHEMA_VERSION` (refusing newer ones)."""
    version = data.get("schema_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ConfigError(
            [Problem("schema_version", f"{version!r} is not a schema version", "set it to 1")]
        )
    if version > SCHEMA_VERSION:
        raise ConfigError(
            [
                Problem(
                    "schema_version",
                    f"written by a newer VM-Desk (schema {version}; this one reads up to "
                    f"{SCHEMA_VERSION})",
                    "upgrade VM-Desk to open this VM; the file was left as it is",
                )
            ]
        )
    while version < SCHEMA_VERSION:
        data = MIGRATIONS[version](data)
        version += 1
    return data


def _field(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("linux", "uefi", "bios"):  # the discriminated union's branch name
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _problem(error: Any) -> Problem:
    field = _field(tuple(error["loc"]))
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "vmdesk":
        return Problem(field, error["msg"], str(ctx.get("hint", "")))
    if kind == "missing":
        return Problem(field, "is required", "add it; `vmdesk schema` lists every field")
    if kind == "extra_forbidden":
        return Problem(field, "is not a known field", "remove it or check its spelling")
    if kind == "string_pattern_mismatch" and field == "name":
        return Problem(
            field,
            f"{error.get('input')!r} is not a valid VM name",
            "use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return Problem(field, error["msg"], "see `vmdesk schema` for what this field accepts")


def from_dict(data: Any, *, context: str = "") -> VMConfig:
    """Validate a description; raises :class:`ConfigError` and nothing else on bad input."""
    if not isinstance(data, dict):
        raise ConfigError(
            [Problem("", "a VM description must be a JSON object", "see `vmdesk schema`")],
            context,
        )
    try:
        config = VMConfig.model_validate(migrate(data))
    except ValidationError as exc:
        raise ConfigError([_problem(e) for e in exc.errors()], context) from None
    except ConfigError as exc:
        raise ConfigError(exc.problems, context) from None
    problems = rule_problems(config)
    if problems:
        raise ConfigError(problems, context)
    return config


def from_json(text: str, *, context: str = "") -> VMConfig:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            [Problem("", f"not valid JSON ({exc})", "fix the syntax, or restore a backup")],
            context,
        ) from None
    return from_dict(data, context=context)


def to_dict(config: VMConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


def to_json(config: VMConfig) -> str:
    return json.dumps(to_dict(config), indent=2) + "\n"


def json_schema() -> dict[str, Any]:
    return VMConfig.model_json_schema()


def rule_problems(config: VMConfig) -> list[Problem]:
    """The rules that span fields (each a problem with a hint); empty when all hold."""
    problems: list[Problem] = []
    boot = config.boot
    if isinstance(boot, BiosBoot):
        if boot.secure_boot:
            problems.append(
                Problem(
                    "boot.secure_boot",
                    "secure boot needs UEFI firmware, not BIOS",
                    "use --boot uefi --secure-boot, or turn secure boot off",
                )
            )
        if config.arch != "x86_64":
            problems.append(
                Problem("boot.kind", "BIOS boot exists only for x86_64 guests", "use --boot uefi")
            )
    if config.engine == "vz" and config.arch == "x86_64":
        problems.append(
            Problem(
                "engine",
                "Virtualization.framework runs only guests of the Mac's own architecture",
                "use --engine qemu for x86_64 guests on Apple silicon",
            )
        )
    seen_macs: dict[str, int] = {}
    for index, nic in enumerate(config.nics):
        if nic.mac is not None:
            if nic.mac in seen_macs:
                problems.append(
                    Problem(
                        f"nics[{index}].mac",
                        f"{nic.mac} is also used by nics[{seen_macs[nic.mac]}]",
                        "give each NIC its own MAC, or leave it empty to generate one",
                    )
                )
            seen_macs.setdefault(nic.mac, index)
        if nic.mode == "bridged" and not nic.bridge:
            problems.append(
                Problem(
                    f"nics[{index}].bridge",
                    "bridged networking needs a host bridge or interface",
                    "name it, e.g. --nic bridged:br0",
                )
            )
        if nic.mode != "nat" and nic.forwards:
            problems.append(
                Problem(
                    f"nics[{index}].forwards",
                    f"port forwards need NAT networking, not {nic.mode}",
                    "remove the forwards or use --nic nat",
                )
            )
        ports: set[tuple[str, str, int]] = set()
        for fwd in nic.forwards:
            key = (fwd.protocol, fwd.host_address, fwd.host_port)
            if key in ports:
                problems.append(
                    Problem(
                        f"nics[{index}].forwards",
                        f"host {fwd.protocol} port {fwd.host_port} is forwarded twice",
                        "forward each host port once",
                    )
                )
            ports.add(key)
    tags: set[str] = set()
    for index, share in enumerate(config.shares):
        if share.tag in tags:
            problems.append(
                Problem(
                    f"shares[{index}].tag",
                    f"tag {share.tag!r} is used by two shared folders",
                    "give each shared folder its own tag",
                )
            )
        tags.add(share.tag)
    orders: dict[int, str] = {}
    bootables = [(f"disks[{i}]", d.boot_order) for i, d in enumerate(config.disks)]
    bootables += [(f"cdroms[{i}]", c.boot_order) for i, c in enumerate(config.cdroms)]
    bootables += [(f"nics[{i}]", n.boot_order) for i, n in enumerate(config.nics)]
    for where, order in bootables:
        if order is None:
            continue
        if order in orders:
            problems.append(
                Problem(
                    f"{where}.boot_order",
                    f"boot order {order} is also given to {orders[order]}",
                    "give each bootable device its own boot order",
                )
            )
        orders.setdefault(order, where)
    return problems
