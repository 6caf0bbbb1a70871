"""Settings as people give them (``--forward tcp:8080:80``, ``--kernel ~/vmlinuz``) applied
to a VM description's JSON form, with the rules a user expects: a kernel means Linux boot,
forwards and a MAC belong to the first NIC, a new VM gets a NAT NIC. The CLI's flags and the
web API's ``settings`` both come through here, so the two can never differ.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import TypedDict  # pydantic validates these only from here on 3.11

from vmdesk.core import specs
from vmdesk.core.errors import VMDeskError
from vmdesk.core.host_paths import expand

# Plain values that replace the description's own.
_SCALARS = ("arch", "engine", "cpus", "memory", "clipboard", "guest_agent", "balloon", "tpm",
            "isolation")  # fmt: skip


class Settings(TypedDict, total=False):
    """What may be set; a missing key or None leaves the description as it is (the API
    refuses unknown keys: a typo must not pass silently)."""

    arch: str | None
    engine: str | None
    cpus: int | None
    memory: str | int | None
    clipboard: bool | None
    guest_agent: bool | None
    balloon: bool | None
    tpm: bool | None
    isolation: str | None
    boot: str | None  # uefi, bios, linux
    secure_boot: bool | None
    kernel: str | None
    initrd: str | None
    cmdline: str | None
    disks: list[str] | tuple[str, ...]  # image paths to attach
    isos: list[str] | tuple[str, ...]  # ISOs to attach as CD-ROMs
    nics: list[str] | tuple[str, ...]  # nat, none, bridged:IFACE (replace the NICs)
    mac: str | None  # of the first NIC
    forwards: list[str] | tuple[str, ...]  # [tcp|udp:][ADDR:]HOST:GUEST on the first NIC
    shares: list[str] | tuple[str, ...]  # PATH[:TAG][:ro][:virtiofs|9p]
    display: str | None  # virtio-gpu, ramfb, none
    resolution: str | None  # WIDTHxHEIGHT
    vnc: bool | None
    usbs: list[str] | tuple[str, ...]  # VENDOR:PRODUCT
    disk_size: str | int | None  # a new VM's own new disk (qcow2, in its bundle), e.g. 32GiB
    # A new VM made from a pulled image (see service.image_vms): what it is checked
    # against, and its cloud-init seed (user, keys, password, timezone, packages, their own
    # user-data file merged in). A password is only ever stored hashed, in the seed.
    digest: str | None  # sha256:HEX or sha512:HEX, for an image given by URL
    user: str | None
    ssh_keys: list[str] | tuple[str, ...]  # public key files
    password: str | None
    timezone: str | None
    packages: list[str] | tuple[str, ...]
    cloud_init: str | None  # a user-data YAML file of the user's own


Settings.__pydantic_config__ = {"extra": "forbid"}  # type: ignore[attr-defined]


class Removals(TypedDict, total=False):
    shares: list[str] | tuple[str, ...]  # tags
    forwards: list[int] | tuple[int, ...]  # host ports
    usbs: list[str] | tuple[str, ...]  # VENDOR:PRODUCT


def _absolute(path: str) -> str:
    return str(expand(path).absolute())


def _apply_boot(data: dict[str, Any], s: Settings, named: list[str]) -> None:
    boot = dict(data.get("boot") or {"kind": "uefi"})
    if s.get("boot") is not None and s["boot"] != boot.get("kind"):
        boot = {"kind": s["boot"]}
    if s.get("kernel") is not None:
        if s.get("boot") is None and boot.get("kind") != "linux":
            boot = {"kind": "linux"}  # a kernel to boot means direct Linux boot
        boot["kernel"] = _absolute(str(s["kernel"]))
        named.append(boot["kernel"])
    if s.get("initrd") is not None:
        boot["initrd"] = _absolute(str(s["initrd"]))
        named.append(boot["initrd"])
    if s.get("cmdline") is not None:
        boot["cmdline"] = s["cmdline"]
    if s.get("secure_boot") is not None:
        boot["secure_boot"] = s["secure_boot"]
    data["boot"] = boot


def _apply_network(data: dict[str, Any], s: Settings) -> None:
    if s.get("nics"):
        data["nics"] = [specs.nic(spec) for spec in s.get("nics") or ()]
    nics = data.setdefault("nics", [{"mode": "nat"}])
    if s.get("mac") is None and not s.get("forwards"):
        return
    if not nics:
        raise VMDeskError("the VM has no network interface", hint="add one with --nic nat")
    if s.get("mac") is not None:
        nics[0]["mac"] = s["mac"]
    for spec in s.get("forwards") or ():
        nics[0].setdefault("forwards", []).append(specs.forward(spec))


def _apply_display(data: dict[str, Any], s: Settings) -> None:
    display = data.setdefault("display", {})
    if s.get("display") is not None:
        display["device"] = s["display"]
    if s.get("resolution") is not None:
        display["width"], display["height"] = specs.resolution(str(s["resolution"]))
    if s.get("vnc") is not None:
        display["vnc"] = s["vnc"]


def apply(data: dict[str, Any], s: Settings) -> list[str]:
    """Apply ``s`` to a description's JSON form in place; returns the host paths the user
    named (an isolated VM may use those)."""
    named: list[str] = []
    for key in _SCALARS:
        if s.get(key) is not None:
            data[key] = s[key]  # type: ignore[literal-required]
    _apply_boot(data, s, named)
    for path in s.get("disks") or ():
        entry = specs.disk(path)
        entry["format"] = _attachable(entry["file"])
        data.setdefault("disks", []).append(entry)
        named.append(entry["file"])
    for path in s.get("isos") or ():
        iso = _absolute(path)
        data.setdefault("cdroms", []).append({"file": iso})
        named.append(iso)
    _apply_network(data, s)
    for spec in s.get("shares") or ():
        entry = specs.share(spec)
        data.setdefault("shares", []).append(entry)
        named.append(entry["path"])
    _apply_display(data, s)
    for spec in s.get("usbs") or ():
        data.setdefault("usb_devices", []).append(specs.usb(spec))
    return named


def _attachable(file: str) -> str:
    """The image's format, from what it is rather than its name; refused like
    ``disk attach`` refuses it (missing, a folder, another format, an overlay)."""
    from pathlib import Path

    from vmdesk.storage import vm_media  # qemu-img: only for a command that names a disk

    return vm_media.attachable(Path(file))[0]


def remove(data: dict[str, Any], r: Removals) -> None:
    """Drop shares (by tag), forwards (by host port) and USB devices from ``data``."""
    tags = set(r.get("shares") or ())
    data["shares"] = [s for s in data.get("shares") or [] if s["tag"] not in tags]
    ports = set(r.get("forwards") or ())
    for nic in data.get("nics") or []:
        nic["forwards"] = [f for f in nic.get("forwards") or [] if f["host_port"] not in ports]
    gone = {u.lower() for u in r.get("usbs") or ()}
    data["usb_devices"] = [
        u
        for u in data.get("usb_devices") or []
        if f"{u['vendor_id']}:{u['product_id']}".lower() not in gone
    ]
