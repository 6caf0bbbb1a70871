"""Request bodies of the API (responses are the service layer's plain data)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from vmdesk.service.settings import Settings


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateRequest(_Body):
    config: dict[str, Any] = Field(description="a VM description (see /api/schema)")
    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="tiny-linux (built-in, built on first use), a catalog image (see "
        "/api/images), or a URL with settings.digest: the VM's disk is an overlay on it",
    )
    settings: Settings | None = Field(
        default=None,
        description="settings as the CLI's flags take them (forwards: ['tcp:8080:80'], "
        "shares: ['~/src:src:ro'], kernel: a path that implies Linux boot...), applied to "
        "config by the same rules",
    )
    start: bool = Field(default=False, description="start the VM once it is created")
    host: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="make it on this libvirt host (see /api/hosts), not on this desk: its "
        "files are uploaded to the host's pool and it is then HOST:NAME",
    )


class HostRequest(_Body):
    name: str = Field(max_length=64, description="what VMs on it are called by: NAME:VM")
    uri: str = Field(
        max_length=2048,
        description="its libvirt daemon, e.g. qemu+ssh://user@lab/system (no credentials: "
        "SSH's agent or libvirt's own authentication give them)",
    )
    accel: Literal["auto", "kvm", "tcg"] = Field(
        default="auto", description="tcg keeps its VMs off a KVM it offers and can't run"
    )


class ValidateRequest(_Body):
    config: Any = Field(description="a VM description to check (see /api/schema)")


class CloneRequest(_Body):
    name: str = Field(description="the new VM's name")
    linked: bool = Field(default=False, description="share the source's disks as a base")
    forwards: bool = Field(default=True, description="keep the port forwards")


class StopRequest(_Body):
    force: bool = Field(default=False, description="pull the plug at once")
    timeout: float = Field(default=30.0, ge=0, le=3600, description="seconds before forcing")


class SnapshotRequest(_Body):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    disk_only: bool = Field(
        default=False, description="of a running VM: the disks only, not the RAM"
    )


class DiskRequest(_Body):
    size: str | int = Field(description="virtual size, e.g. 20GiB (a bare number is GiB)")
    format: Literal["qcow2", "raw"] = "qcow2"
    interface: Literal["virtio-blk", "nvme", "usb"] = "virtio-blk"


# -- inside a running guest (api_guest.py) -------------------------------------------------

MAX_DATA = 32 << 20  # bytes of stdin or a clipboard offer (the supervisor's line is 128 MiB)
# The MIME types the guests' agents carry (vmdesk.supervisor.guest_channels.TYPES).
ClipboardType = Literal[
    "text/plain;charset=utf-8", "text/plain", "image/png", "image/bmp", "image/jpeg", "image/tiff"
]
Selection = Literal["clipboard", "primary"]


def _from_base64(value: object) -> object:
    """RFC 4648 base64 (with padding, no stray characters) to bytes."""
    if not isinstance(value, str):
        return value  # the bytes validator says what is wrong with it
    if len(value) > (MAX_DATA + 2) // 3 * 4:
        raise PydanticCustomError("too_long", f"is more than {MAX_DATA >> 20} MiB")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise PydanticCustomError("base64", "is not base64 (RFC 4648, padded with =)") from None


Base64 = Annotated[
    bytes,
    BeforeValidator(_from_base64),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]


class ExecRequest(_Body):
    argv: list[str] = Field(min_length=1, description='the command and its arguments: ["ls", "/"]')
    stdin: Base64 | None = Field(default=None, description="its standard input, base64")
    timeout: float = Field(default=60.0, gt=0, le=3600, description="seconds to wait for it")
    output: Literal["text", "base64"] = Field(
        default="text",
        description="stdout and stderr as UTF-8 text, or base64 (output that is not UTF-8 "
        "comes as base64 anyway: the reply's encoding says which)",
    )

    @field_validator("argv")
    @classmethod
    def _names_a_program(cls, argv: list[str]) -> list[str]:
        if not argv[0]:
            raise PydanticCustomError("no_program", "its first item names no program")
        return argv


class ClipboardRequest(_Body):
    type: ClipboardType = "text/plain;charset=utf-8"
    data: Base64 = Field(description="the bytes, base64")
    selection: Selection = "clipboard"


class MemoryRequest(_Body):
    memory: str | int = Field(description="the guest's memory for this run, e.g. 1GiB (MiB "
                              "when a bare number), at most what it booted with")  # fmt: skip


class DisplayRequest(_Body):
    # the bounds of a VM description's display
    width: int = Field(ge=320, le=8192)
    height: int = Field(ge=200, le=8192)
