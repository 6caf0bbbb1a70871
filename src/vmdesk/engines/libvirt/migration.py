"""Live migration of a running VM between two libvirt hosts whose storage is their own.

The destination gets empty volumes for the VM's writable disks, which QEMU fills while the
VM runs (libvirt's storage migration over NBD), and copies of its read-only files (kernel,
initrd, CDs), which the guest needs there from its first instruction. The domain's XML is
the source's own (migratable) with each path, the serial log and our metadata rewritten
for the destination; the source's volumes go only once the VM runs there.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vmdesk.core.errors import VMDeskError
from vmdesk.engines.libvirt import connection, metadata
from vmdesk.engines.libvirt.domain_xml import QEMU_NS
from vmdesk.engines.libvirt.host import CHUNK, LibvirtHost

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vmdesk.core.config import VMConfig

MIGRATION_ADDRESS = "tcp://{host}"  # the destination as the source's QEMU reaches it


@dataclass(frozen=True)
class Plan:
    """Which of the VM's host paths QEMU copies (writable disks, by target device) and
    which are copied before it starts there."""

    disks: dict[str, str]  # source path -> target dev (vda)
    files: list[str]  # source paths of read-only files


def plan(domain_xml: str) -> Plan:
    root = ET.fromstring(domain_xml)
    disks, files = {}, []
    for disk in root.findall("devices/disk"):
        source = disk.find("source")
        path = None if source is None else source.get("file")
        if path is None:
            continue
        target = disk.find("target")
        writable = disk.get("device") == "disk" and disk.find("readonly") is None
        if writable and target is not None:
            disks[path] = target.get("dev", "")
        else:
            files.append(path)
    files += [el.text for el in (root.find("os/kernel"), root.find("os/initrd"))
              if el is not None and el.text]  # fmt: skip
    return Plan(disks, files)


def destination_xml(domain_xml: str, paths: Mapping[str, str], serial_log: str | None,
                    config: VMConfig, files: Mapping[str, str]) -> str:  # fmt: skip
    """The source's migratable domain XML for the destination: every path in ``paths``
    replaced, the serial console logged where the destination logs (or nowhere), a fresh
    NVRAM path chosen there, and our metadata naming the destination's volumes."""
    ET.register_namespace("qemu", QEMU_NS)
    root = ET.fromstring(domain_xml)
    for source in root.iterfind("devices/disk/source"):
        if source.get("file") in paths:
            source.set("file", paths[source.get("file", "")])
    for el in (root.find("os/kernel"), root.find("os/initrd")):
        if el is not None and el.text in paths:
            el.text = paths[el.text or ""]
    nvram = root.find("os/nvram")
    if nvram is not None:  # the source's path is its daemon's; the destination picks one
        nvram.text = None
    for serial in root.findall("devices/serial") + root.findall("devices/console"):
        for log in serial.findall("log"):
            serial.remove(log)
        if serial_log is not None and serial.tag == "serial":
            ET.SubElement(serial, "log", file=serial_log, append="on")
    old = root.find("metadata")
    index = list(root).index(old) if old is not None else 3
    if old is not None:
        root.remove(old)
    root.insert(index, metadata.element(config, files))
    return ET.tostring(root, encoding="unicode")


def migrate(source: LibvirtHost, dest: LibvirtHost, name: str) -> None:
    """Move the running VM ``name`` from ``source`` to ``dest`` without stopping it."""
    lv = source.libvirt
    dom = source.handle(name)
    stored = source.domain(name).stored
    with connection.errors(source.where):
        xml = dom.XMLDesc(lv.VIR_DOMAIN_XML_MIGRATABLE)
    steps = plan(xml)
    made: dict[str, str] = {}  # source path -> its volume's path on dest
    try:
        for path in steps.disks:
            made[path] = _empty_like(source, dest, path)
        for path in steps.files:
            made[path] = _copy(source, dest, path)
        files = {file: made.get(path, path) for file, path in stored.files.items()}
        target = destination_xml(xml, made, dest.serial_log(name), stored.config, files)
        address = MIGRATION_ADDRESS.format(host=dest.address())
        params = {lv.VIR_MIGRATE_PARAM_DEST_XML: target, lv.VIR_MIGRATE_PARAM_URI: address,
                  lv.VIR_MIGRATE_PARAM_DISKS_URI: address,
                  lv.VIR_MIGRATE_PARAM_MIGRATE_DISKS: list(steps.disks.values())}  # fmt: skip
        flags = (lv.VIR_MIGRATE_LIVE | lv.VIR_MIGRATE_PERSIST_DEST
                 | lv.VIR_MIGRATE_UNDEFINE_SOURCE | lv.VIR_MIGRATE_NON_SHARED_DISK)  # fmt: skip
        with connection.errors(f"the migration from {source.where} to {dest.where}"):
            dom.migrate3(dest.conn, params, flags)
    except BaseException:
        for path in made.values():
            with contextlib.suppress(VMDeskError):
                dest.remove_volume(path)
        raise
    for path in [*steps.disks, *steps.files]:  # it runs on dest now: the source's go
        with contextlib.suppress(VMDeskError):
            source.remove_volume(path)


def _volume(host: LibvirtHost, path: str) -> tuple[Any, ET.Element]:
    with connection.errors(host.where):
        vol = host.conn.storageVolLookupByPath(path)
        return vol, ET.fromstring(vol.XMLDesc(0))


def _empty_like(source: LibvirtHost, dest: LibvirtHost, path: str) -> str:
    """An empty volume on dest of the disk's format and virtual size, for QEMU to fill."""
    with connection.errors(source.where):
        source.conn.storagePoolLookupByName("vmdesk").refresh(0)  # formats probed
    vol, found = _volume(source, path)
    kind = found.find("target/format")
    fmt = "raw" if kind is None else kind.get("type", "raw")
    return dest.new_volume(str(vol.name()), int(found.findtext("capacity") or 0), fmt)


def _copy(source: LibvirtHost, dest: LibvirtHost, path: str) -> str:
    """A byte-for-byte copy of the file on dest, streamed from one daemon to the other."""
    vol, found = _volume(source, path)
    size = int(found.findtext("physical") or found.findtext("capacity") or 0)
    copy = dest.new_volume(str(vol.name()), size, "raw")
    try:
        with connection.errors(f"the copy from {source.where} to {dest.where}"):
            incoming = source.conn.newStream(0)
            vol.download(incoming, 0, 0, 0)
            outgoing = dest.conn.newStream(0)
            dest.conn.storageVolLookupByPath(copy).upload(outgoing, 0, 0, 0)
            while chunk := incoming.recv(CHUNK):
                outgoing.send(chunk)
            incoming.finish()
            outgoing.finish()
    except BaseException:
        with contextlib.suppress(VMDeskError):
            dest.remove_volume(copy)
        raise
    return copy
