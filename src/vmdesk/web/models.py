"""Request bodies of the API (responses are the service layer's plain data)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
