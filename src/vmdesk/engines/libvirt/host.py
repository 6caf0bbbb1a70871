"""One libvirt host, connected: its facts, its VM-Desk domains, their lifecycle, the
storage pool their files go to, consoles and screenshots.

Only domains that carry VM-Desk's metadata are ours; others on the host are never listed
or touched. The VM's description stays in its domain (metadata.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vmdesk.core import hosts
from vmdesk.core.errors import Conflict, HostError, NotFound, Unsupported
from vmdesk.engines.libvirt import connection, metadata
from vmdesk.engines.libvirt.listing import NAMESPACE, state_of

TYPE_CHECKING = False  # start and stop import no VM model (pydantic): it costs ~100 ms
if TYPE_CHECKING:
    from vmdesk.core.config import VMConfig
    from vmdesk.engines.libvirt.domain_xml import Placement

POOL = "vmdesk"
POOL_DIRS = {"/system": "/var/lib/libvirt/images/vmdesk"}
LOG_DIRS = {"/system": "/var/log/libvirt/qemu"}  # a system daemon's own, for serial logs
CHUNK = 1 << 20
Progress = Callable[[int, int], None]  # bytes sent, of total


@dataclass(frozen=True)
class Domain:
    name: str
    state: str  # VM-Desk's states (core/states.py)
    stored: metadata.Stored


class LibvirtHost:
    def __init__(self, name: str, uri: str, *, timeout: float = connection.CONNECT_TIMEOUT,
                 accel: str = "auto"):  # fmt: skip
        self.name, self.uri, self.accel = name, uri, accel
        self.libvirt = connection.module()
        self.conn = connection.connect(uri, f"host {name}", timeout=timeout)

    def close(self) -> None:
        with connection.errors(self.where):
            self.conn.close()

    @property
    def where(self) -> str:
        return f"host {self.name}"

    @property
    def remote(self) -> bool:
        """Whether the daemon is on another machine (its URI names one, not this one)."""
        return hosts.is_remote(self.uri)

    def facts(self) -> dict[str, Any]:
        with connection.errors(self.where):
            model, memory_mib, cpus = self.conn.getInfo()[:3]
            version = self.conn.getLibVersion()
            return {
                "hostname": self.conn.getHostname(),
                "libvirt": f"{version // 1000000}.{version // 1000 % 1000}.{version % 1000}",
                "cpu": model, "cpus": cpus, "memory_mib": memory_mib,
            }  # fmt: skip

    def offers_kvm(self, arch: str) -> bool:
        """Whether the host's libvirt offers KVM for ``arch`` (that it works is another
        matter: the caller may know better, see the service)."""
        return self._domain_caps(arch, "kvm") is not None

    def offers_passt(self, arch: str) -> bool:
        """Whether user-mode NICs can run on passt there: libvirt lists it among its NIC
        backends (9.0 lists none, and refuses passt)."""
        caps = self._domain_caps(arch, None)
        if caps is None:
            return False
        found = caps.findall("devices/interface/enum[@name='backendType']/value")
        return any(value.text == "passt" for value in found)

    def _domain_caps(self, arch: str, virt_type: str | None) -> ET.Element | None:
        try:
            return ET.fromstring(self.conn.getDomainCapabilities(None, arch, None, virt_type))
        except self.libvirt.libvirtError:
            return None

    # -- domains ------------------------------------------------------------------------

    def domains(self) -> list[Domain]:
        with connection.errors(self.where):
            found = []
            for dom in self.conn.listAllDomains(0):
                stored = metadata.read(dom.XMLDesc(0))
                if stored is not None:
                    found.append(Domain(dom.name(), state_of(self.libvirt, dom.state()[0]), stored))
        return sorted(found, key=lambda d: d.name)

    def vm_count(self) -> int:
        """How many VM-Desk domains the host has (their metadata found, not read)."""
        element = self.libvirt.VIR_DOMAIN_METADATA_ELEMENT
        count = 0
        with connection.errors(self.where):
            for dom in self.conn.listAllDomains(0):
                try:
                    dom.metadata(element, NAMESPACE)
                except self.libvirt.libvirtError:
                    continue
                count += 1
        return count

    def _domain(self, name: str) -> Any:
        """The domain named so, if it carries our metadata (else NotFound)."""
        with connection.errors(self.where):
            try:
                dom = self.conn.lookupByName(name)
                dom.metadata(self.libvirt.VIR_DOMAIN_METADATA_ELEMENT, NAMESPACE)
            except self.libvirt.libvirtError as exc:
                if exc.get_error_code() not in (
                    self.libvirt.VIR_ERR_NO_DOMAIN,
                    self.libvirt.VIR_ERR_NO_DOMAIN_METADATA,
                ):
                    raise  # fmt: skip
                raise NotFound(
                    f"no VM named {name!r} on {self.where}",
                    hint=f"see `vmdesk list` for the VMs on host {self.name}",
                ) from None
            return dom

    def handle(self, name: str) -> Any:
        """The libvirt domain of our VM ``name`` (for the engine's modules beside this)."""
        return self._domain(name)

    def state(self, name: str) -> str:
        """The VM's state alone (no description read)."""
        dom = self._domain(name)
        with connection.errors(self.where):
            return state_of(self.libvirt, dom.state()[0])

    def domain(self, name: str) -> Domain:
        dom = self._domain(name)
        with connection.errors(self.where):
            stored = metadata.read(dom.XMLDesc(0))
            assert stored is not None  # _domain checked
            return Domain(name, state_of(self.libvirt, dom.state()[0]), stored)

    def refuse_taken(self, name: str) -> None:
        """Conflict when any domain of the host (ours or not) has that name."""
        try:
            self.conn.lookupByName(name)
        except self.libvirt.libvirtError:
            return
        raise Conflict(f"{self.where} already has a VM named {name!r}",
                       hint="choose another name")  # fmt: skip

    def define(self, config: VMConfig, placement: Placement) -> None:
        from vmdesk.engines.libvirt.domain_xml import build_domain

        self.refuse_taken(config.name)
        with connection.errors(self.where):
            self.conn.defineXML(build_domain(config, placement))

    def redefine(self, config: VMConfig, placement: Placement) -> None:
        """Our VM's domain defined anew (the same name and UUID): a changed description."""
        from vmdesk.engines.libvirt.domain_xml import build_domain

        self._domain(config.name)
        with connection.errors(self.where):
            self.conn.defineXML(build_domain(config, placement))

    def act(self, name: str, action: str) -> None:
        """start, start-paused, shutdown (the power button), destroy, suspend, resume,
        reboot."""
        dom = self._domain(name)
        paused = self.libvirt.VIR_DOMAIN_START_PAUSED
        with connection.errors(self.where):
            {"start": dom.create, "start-paused": lambda: dom.createWithFlags(paused),
             "shutdown": dom.shutdown, "destroy": dom.destroy, "suspend": dom.suspend,
             "resume": dom.resume, "reboot": lambda: dom.reboot(0)}[action]()  # fmt: skip

    def undefine(self, name: str) -> list[str]:
        """Remove a stopped VM and the volumes of its files; the paths removed."""
        dom = self._domain(name)
        stored = self.domain(name).stored
        with connection.errors(self.where):
            if dom.isActive():
                raise Conflict(f"{name} is running on {self.where}", hint="stop it first")
            flags = (self.libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                     | self.libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                     | self.libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)  # fmt: skip
            dom.undefineFlags(flags)
            removed = []
            for path in stored.files.values():
                try:
                    self.conn.storageVolLookupByPath(path).delete(0)
                    removed.append(path)
                except self.libvirt.libvirtError:
                    continue  # already gone, or not a volume of ours
        return removed

    # -- storage --------------------------------------------------------------------------

    def pool(self) -> Any:
        """VM-Desk's directory pool on the host, defined and started when missing."""
        with connection.errors(self.where):
            try:
                pool = self.conn.storagePoolLookupByName(POOL)
            except self.libvirt.libvirtError:
                pool = self.conn.storagePoolDefineXML(self._pool_xml(), 0)
                pool.build(0)
                pool.setAutostart(1)
            if not pool.isActive():
                pool.create(0)
            return pool

    def _daemon(self) -> str:
        """/system or /session."""
        return urlsplit(str(self.conn.getURI())).path

    def serial_log(self, name: str) -> str | None:
        folder = LOG_DIRS.get(self._daemon())
        return f"{folder}/{name}-serial.log" if folder else None

    def _pool_xml(self) -> str:
        path = POOL_DIRS.get(self._daemon())
        if path is None:
            raise HostError(
                f"{self.where} has no '{POOL}' storage pool, and VM-Desk knows no place for "
                "one on a session daemon",
                hint=f"define a directory pool named {POOL} there (virsh pool-define-as)",
            )
        pool = ET.Element("pool", type="dir")
        ET.SubElement(pool, "name").text = POOL
        ET.SubElement(ET.SubElement(pool, "target"), "path").text = path
        return ET.tostring(pool, encoding="unicode")

    def upload(self, source: Path, volume: str,
               progress: Progress | None = None) -> tuple[str, str]:  # fmt: skip
        """Copy a local file into a new volume of the pool, byte for byte: its path on the
        host and the SHA-256 of the bytes sent. The volume is made raw of the file's exact
        size, whatever the file holds (a qcow2 volume would be made by qemu-img, larger than
        what overwrites it)."""
        size = source.stat().st_size
        path = self.new_volume(volume, size, "raw")
        with connection.errors(self.where):
            vol = self.conn.storageVolLookupByPath(path)
            try:
                digest = self._send(vol, source, size, progress)
            except BaseException:
                vol.delete(0)
                raise
            return path, digest

    def new_volume(self, volume: str, capacity: int, fmt: str) -> str:
        """A new volume in the pool (a killed transfer's leftover of that name replaced);
        its path. A raw one is a sparse file of ``capacity`` bytes."""
        pool = self.pool()
        vol = ET.Element("volume")
        ET.SubElement(vol, "name").text = volume
        ET.SubElement(vol, "capacity", unit="bytes").text = str(capacity)
        ET.SubElement(ET.SubElement(vol, "target"), "format", type=fmt)
        with connection.errors(self.where):
            with contextlib.suppress(self.libvirt.libvirtError):
                pool.storageVolLookupByName(volume).delete(0)
            return str(pool.createXML(ET.tostring(vol, encoding="unicode"), 0).path())

    def address(self) -> str:
        """Where another host's QEMU reaches this one (for a live migration's data)."""
        return urlsplit(self.uri).hostname or "127.0.0.1"

    def clone_volume(self, path: str, volume: str) -> str:
        """A copy of the volume at ``path`` as a new volume of the pool; its path. Made by
        libvirt on the host (nothing crosses the connection), in the source's format as the
        pool reads it: a qcow2 is copied by qemu-img, which leaves its snapshots behind."""
        pool = self.pool()
        with connection.errors(self.where):
            pool.refresh(0)  # the format of a volume uploaded as raw bytes, probed
            source = self.conn.storageVolLookupByPath(path)
            found = ET.fromstring(source.XMLDesc(0))
            vol = ET.Element("volume")
            ET.SubElement(vol, "name").text = volume
            ET.SubElement(vol, "capacity", unit="bytes").text = found.findtext("capacity")
            kind = found.find("target/format")
            fmt = "raw" if kind is None else kind.get("type", "raw")
            ET.SubElement(ET.SubElement(vol, "target"), "format", type=fmt)
            with contextlib.suppress(self.libvirt.libvirtError):  # a killed clone's leftover
                pool.storageVolLookupByName(volume).delete(0)
            made = pool.createXMLFrom(ET.tostring(vol, encoding="unicode"), source, 0)
            return str(made.path())

    def remove_volume(self, path: str) -> None:
        with connection.errors(self.where):
            self.conn.storageVolLookupByPath(path).delete(0)

    def download(self, path: str, sink: Callable[[bytes], object],
                 progress: Progress | None = None) -> str:  # fmt: skip
        """Every byte of the volume at ``path`` (the whole file, however it has grown since
        it was made), handed to ``sink`` in order; the SHA-256 of the bytes received."""
        digest = hashlib.sha256()
        with connection.errors(self.where):
            vol = self.conn.storageVolLookupByPath(path)
            total = int(ET.fromstring(vol.XMLDesc(0)).findtext("physical") or 0)  # file size
            stream = self.conn.newStream(0)
            vol.download(stream, 0, 0, 0)  # length 0: to the end of the file
            got = 0
            while chunk := stream.recv(CHUNK):
                sink(chunk)
                digest.update(chunk)
                got += len(chunk)
                if progress:
                    progress(got, max(total, got))
            stream.finish()
        return digest.hexdigest()

    def digest(self, path: str) -> str:
        """The SHA-256 of the volume at ``path`` as the host holds it (read back whole)."""
        return self.download(path, lambda _chunk: None)

    def _send(self, vol: Any, source: Path, size: int, progress: Progress | None) -> str:
        stream = self.conn.newStream(0)
        vol.upload(stream, 0, size, 0)
        sent, digest = 0, hashlib.sha256()
        with source.open("rb") as data:
            while chunk := data.read(CHUNK):
                stream.send(chunk)
                digest.update(chunk)
                sent += len(chunk)
                if progress:
                    progress(sent, size)
        stream.finish()
        return digest.hexdigest()

    # -- snapshots (libvirt's own: internal, in the qcow2 disks, with the RAM when running) --

    def snapshots(self, name: str) -> tuple[list[dict[str, Any]], str | None]:
        """Each snapshot (name, created, parent, ram) and the current one's name."""
        dom = self._domain(name)
        found = []
        with connection.errors(self.where):
            for snap in dom.listAllSnapshots(0):
                xml = ET.fromstring(snap.getXMLDesc(0))
                found.append({
                    "name": xml.findtext("name") or "",
                    "created": float(xml.findtext("creationTime") or 0),
                    "parent": xml.findtext("parent/name"),
                    "ram": xml.findtext("state") in ("running", "paused"),
                })  # fmt: skip
            current = dom.snapshotCurrent(0).getName() if dom.hasCurrentSnapshot(0) else None
        return sorted(found, key=lambda s: s["created"]), current

    def snapshot(self, name: str, action: str, snapshot: str) -> None:
        """create, revert or delete snapshot ``snapshot`` of the VM."""
        dom = self._domain(name)
        with connection.errors(self.where):
            if action == "create":
                xml = ET.Element("domainsnapshot")
                ET.SubElement(xml, "name").text = snapshot
                dom.snapshotCreateXML(ET.tostring(xml, encoding="unicode"), 0)
                return
            try:
                snap = dom.snapshotLookupByName(snapshot, 0)
            except self.libvirt.libvirtError:
                raise NotFound(f"no snapshot {snapshot!r} of {name} on {self.where}",
                               hint="see `vmdesk snapshot list HOST:VM`") from None  # fmt: skip
            if action == "revert":
                dom.revertToSnapshot(snap, 0)
            else:
                snap.delete(0)

    # -- console and screen -----------------------------------------------------------------

    def console(self, name: str, on_close: Callable[[], None] | None = None) -> socket.socket:
        """The VM's serial console as a local socket: libvirt's console stream, relayed
        both ways by libvirt's event loop (connection.py); what the guest prints before the
        socket is read waits in it. ``on_close`` runs (in a thread of its own) once either
        end has closed."""
        dom = self._domain(name)
        libvirt = self.libvirt
        with connection.errors(self.where):
            stream = self.conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
            dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        ours, theirs = socket.socketpair()  # blocking: read only when readable
        relay = _Relay(libvirt, stream, theirs, on_close)
        events = libvirt.VIR_STREAM_EVENT_READABLE | libvirt.VIR_STREAM_EVENT_ERROR
        stream.eventAddCallback(events | libvirt.VIR_STREAM_EVENT_HANGUP, relay.from_guest, None)
        relay.watch = libvirt.virEventAddHandle(theirs.fileno(), libvirt.VIR_EVENT_HANDLE_READABLE,
                                                relay.to_guest, None)  # fmt: skip
        return ours

    def display(self, name: str) -> socket.socket:
        """A stream to the running VM's VNC server, with no TCP port open on the host: a
        descriptor libvirt hands over (a daemon on this machine), else the server's unix
        socket joined through the host's SSH connection."""
        dom = self._domain(name)
        scheme = urlsplit(self.uri).scheme
        with connection.errors(self.where):
            if not dom.isActive():
                raise Conflict(f"{name} is not running on {self.where}",
                               hint=f"`vmdesk start {self.name}:{name}`")  # fmt: skip
            if scheme in hosts.LOCAL_SCHEMES:
                skip_auth = self.libvirt.VIR_DOMAIN_OPEN_GRAPHICS_SKIPAUTH
                return socket.socket(fileno=dom.openGraphicsFD(0, skip_auth))
            graphics = ET.fromstring(dom.XMLDesc(0)).find("devices/graphics[@type='vnc']")
        path = None if graphics is None else graphics.get("socket")
        if path is None:
            raise Conflict(f"{name} on {self.where} has no VNC display",
                           hint="give it one: its display's VNC is off")  # fmt: skip
        if scheme != "qemu+ssh":
            raise Unsupported(
                f"the screen of a VM on {self.where} ({scheme}) can't be shown here yet",
                hint="add the host with a qemu+ssh:// URI to see its VMs' screens",
            )
        from vmdesk.engines.libvirt import tunnel

        return tunnel.open_stream(self.uri, path, self.where)

    def screenshot(self, name: str) -> tuple[str, bytes]:
        """The screen as the host's QEMU wrote it: (its MIME type, its bytes); a PPM from
        older hosts, a PNG where QEMU and libvirt can make one."""
        dom = self._domain(name)
        with connection.errors(self.where):
            stream = self.conn.newStream(0)
            mime = str(dom.screenshot(stream, 0, 0))
            data = bytearray()
            while chunk := stream.recv(CHUNK):
                data += chunk
            stream.finish()
        return mime, bytes(data)


class _Relay:
    """Bytes between a non-blocking console stream and our end of a socket pair, in
    libvirt's event loop; either side closing ends both."""

    def __init__(self, libvirt: Any, stream: Any, sock: socket.socket,
                 on_close: Callable[[], None] | None) -> None:  # fmt: skip
        self.libvirt, self.stream, self.sock = libvirt, stream, sock
        self.on_close = on_close
        self.watch: int | None = None
        self.closed = False

    def from_guest(self, _stream: Any, events: int, _opaque: Any) -> None:
        try:
            while not self.closed:
                data = self.stream.recv(65536)
                if data == -2:  # nothing more for now
                    return
                if not data:
                    break
                self.sock.sendall(data)  # a slow reader holds the loop up, nothing is lost
        except (self.libvirt.libvirtError, OSError):
            pass
        self.close()

    def to_guest(self, _watch: int, _fd: int, _events: int, _opaque: Any) -> None:
        try:
            data = self.sock.recv(65536)  # the loop says it is readable: no wait
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        try:
            self.stream.send(data)
        except self.libvirt.libvirtError:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.watch is not None:
            self.libvirt.virEventRemoveHandle(self.watch)
        with contextlib.suppress(self.libvirt.libvirtError):
            self.stream.eventRemoveCallback()
            self.stream.abort()
        self.sock.close()
        if self.on_close is not None:  # not from within libvirt's own event loop
            threading.Thread(target=self.on_close, daemon=True).start()
