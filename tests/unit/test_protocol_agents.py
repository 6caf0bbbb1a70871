"""The guests' agents through the supervisor's control protocol, served for real: a real
Supervisor answers on a real unix socket and the client asks through ``client.call``. Only
the guest's side is fake, on the agents' sockets where QEMU would listen: qemu-ga (JSON
requests in, one JSON reply per line out), and spice-vdagent speaking the SPICE agent's wire
format through spice_wire's encoders and Decoder. The fake hypervisor (test_protocol's
FakeSession, extended here) fires the guest's VSERPORT_CHANGE events."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import random
import struct
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.unit.test_protocol import FakeSession, raw, run
from vmdesk.core import config as vmconfig
from vmdesk.core import errors, listing
from vmdesk.core.bundle import Bundle
from vmdesk.engines.base import Capabilities
from vmdesk.engines.registry import QemuEngine
from vmdesk.integration import spice_wire as wire
from vmdesk.integration.spice_wire import Cap, ClipboardType, MessageType, Selection
from vmdesk.supervisor import client, protocol
from vmdesk.supervisor.daemon import Supervisor

TEXT, PNG = ClipboardType.UTF8_TEXT, ClipboardType.IMAGE_PNG
CLIPBOARD, PRIMARY = Selection.CLIPBOARD, Selection.PRIMARY
TEXT_MIME = "text/plain;charset=utf-8"
WAIT = 5.0  # for what the fakes wait on: only a failing test waits this long

# What spice-vdagent (vdagentd.c) announces; a Windows agent writes CRLF text instead.
VDAGENT = frozenset(
    {
        Cap.MOUSE_STATE, Cap.MONITORS_CONFIG, Cap.REPLY, Cap.CLIPBOARD_BY_DEMAND,
        Cap.CLIPBOARD_SELECTION, Cap.SPARSE_MONITORS_CONFIG, Cap.GUEST_LINEEND_LF,
        Cap.MAX_CLIPBOARD, Cap.AUDIO_VOLUME_SYNC, Cap.GRAPHICS_DEVICE_INFO,
        Cap.CLIPBOARD_NO_RELEASE_ON_REGRAB, Cap.CLIPBOARD_GRAB_SERIAL,
    }
)  # fmt: skip
WINDOWS = (VDAGENT - {Cap.GUEST_LINEEND_LF}) | {Cap.GUEST_LINEEND_CRLF}

INTERFACES = [
    {"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [
        {"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8},
        {"ip-address-type": "ipv6", "ip-address": "::1", "prefix": 128}]},
    {"name": "docker0", "hardware-address": "02:42:ac:11:00:01", "ip-addresses": [
        {"ip-address-type": "ipv4", "ip-address": "172.17.0.1", "prefix": 16}]},
    {"name": "enp0s1", "hardware-address": "52:54:00:12:34:56", "ip-addresses": [
        {"ip-address-type": "ipv4", "ip-address": "10.0.2.15", "prefix": 24},
        {"ip-address-type": "ipv6", "ip-address": "fe80::5054:ff:fe12:3456", "prefix": 64},
        {"ip-address-type": "ipv6", "ip-address": "2a01:4f8:c17:1::15", "prefix": 64}]},
]  # fmt: skip
OSINFO = {
    "id": "debian", "name": "Debian GNU/Linux", "pretty-name": "Debian GNU/Linux 12 (bookworm)",
    "version": "12 (bookworm)", "version-id": "12", "kernel-release": "6.1.0-18-amd64",
    "kernel-version": "#1 SMP", "machine": "x86_64",
}  # fmt: skip
# What the fakes put in the order of things (GuestSession.log), beside the hypervisor's calls.
LOGGED = ("guest-fsfreeze-freeze", "guest-fsfreeze-thaw", "guest-set-time", "guest-shutdown")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(data: str | None) -> bytes:
    assert data is not None
    return base64.b64decode(data, validate=True)


async def until(changed: asyncio.Condition, done: Callable[[], bool]) -> None:
    async with changed:
        await asyncio.wait_for(changed.wait_for(done), WAIT)


async def notify(changed: asyncio.Condition) -> None:
    async with changed:
        changed.notify_all()


# -- the fake hypervisor ---------------------------------------------------------------------


class GuestSession(FakeSession):
    """The fake hypervisor, whose guest opens and closes its agents' ports (QEMU's
    VSERPORT_CHANGE events), with a log of what the guest and the hypervisor were asked, in
    order (shared with the fake agents)."""

    def __init__(self, *, deaf: bool = False, restoring: bool = False) -> None:
        super().__init__(deaf=deaf)
        self.log: list[str] = []
        self._restoring = restoring
        self._events: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[None]]]
        self._events = asyncio.Queue()

    async def port(self, port_id: str, opened: bool) -> None:
        """The guest opened or closed a port; returns once the supervisor has acted on it."""
        handled = asyncio.get_running_loop().create_future()
        event = {"event": "VSERPORT_CHANGE", "data": {"id": port_id, "open": opened}}
        self._events.put_nowait((event, handled))
        await asyncio.wait_for(handled, WAIT)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            event, handled = await self._events.get()
            yield event
            # Asked for the next one: the supervisor is done with this one.
            handled.set_result(None)

    @property
    def restoring(self) -> bool:
        return self._restoring

    async def finish_restore(self) -> None:
        self.calls.append(("finish_restore",))
        self.log.append("finish_restore")

    async def powerdown(self) -> None:
        self.log.append("powerdown")
        await super().powerdown()

    async def quit(self) -> None:
        self.log.append("quit")
        await super().quit()

    async def save_snapshot(self, tag: str, disk_only: bool = False) -> None:
        self.log.append("save_snapshot")
        await super().save_snapshot(tag, disk_only)

    async def load_snapshot(self, tag: str) -> None:
        self.log.append("load_snapshot")
        await super().load_snapshot(tag)


# -- a fake qemu-ga --------------------------------------------------------------------------


class FakeQemuGA:
    """qemu-ga with a canned guest on the guest agent's socket. It reads JSON as a stream (no
    newline needed) and answers in order; ``mute`` leaves requests unanswered (an agent that
    is not running, or a paused guest); ``refuse`` answers a command with a GenericError."""

    def __init__(self, path: Path, log: list[str]) -> None:
        self.path = path
        self.log = log
        self.requests: list[dict[str, Any]] = []
        self.mute = False
        self.refuse: dict[str, str] = {}  # command -> the error's description
        self.on_shutdown: Callable[[], None] = lambda: None
        self.frozen = False
        self.polls = 0
        self.stdin = b""
        self.changed = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> FakeQemuGA:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()

    def commands(self) -> list[str]:
        return [r["execute"] for r in self.requests]

    def arguments(self, command: str) -> list[Any]:
        return [r.get("arguments") for r in self.requests if r["execute"] == command]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        decoder, pending = json.JSONDecoder(), ""
        while data := await reader.read(65536):
            pending += data.decode()
            while pending.strip():
                try:
                    request, end = decoder.raw_decode(pending.lstrip())
                except json.JSONDecodeError:
                    break  # the rest has not arrived yet
                pending = pending.lstrip()[end:]
                self.requests.append(request)
                if not self.mute:
                    self._answer(request, writer)
                await notify(self.changed)
        writer.close()

    def _answer(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        command, args = request["execute"], request.get("arguments") or {}
        if command in LOGGED:
            self.log.append(command)
        if command in self.refuse:
            reply: dict[str, Any] = {"error": {"class": "GenericError",
                                               "desc": self.refuse[command]}}  # fmt: skip
        elif command == "guest-shutdown":
            # qemu-ga says nothing: the guest powers off, and QEMU with it (its end of the
            # port closes).
            self.on_shutdown()
            writer.close()
            return
        else:
            reply = self._run(command, args)
        writer.write(json.dumps({**reply, "id": request["id"]}).encode() + b"\n")

    def _run(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
        value: Any
        if command == "guest-sync":
            value = args["id"]
        elif command in ("guest-ping", "guest-set-time"):
            value = {}
        elif command == "guest-network-get-interfaces":
            value = INTERFACES
        elif command == "guest-get-osinfo":
            value = OSINFO
        elif command == "guest-get-host-name":
            value = {"host-name": "desk-guest"}
        elif command == "guest-exec":
            self.stdin = base64.b64decode(args.get("input-data", ""))
            value = {"pid": 77}
        elif command == "guest-exec-status":
            assert args == {"pid": 77}
            self.polls += 1
            value = {"exited": False} if self.polls == 1 else {
                "exited": True, "exitcode": 3, "out-data": b64(self.stdin.upper() + b"\0\xff"),
                "err-data": b64(b"warn\n")}  # fmt: skip
        elif command in ("guest-fsfreeze-freeze", "guest-fsfreeze-thaw"):
            self.frozen = command == "guest-fsfreeze-freeze"
            value = 2  # file systems frozen or thawed
        else:
            return {"error": {"class": "CommandNotFound", "desc": f"{command} not found"}}
        return {"return": value}


# -- a fake spice-vdagent --------------------------------------------------------------------


def chunks(stream: bytes) -> list[bytes]:
    """The data of each chunk in a port's byte stream."""
    out, pos = [], 0
    while pos < len(stream):
        _, size = wire.CHUNK_HEADER.unpack_from(stream, pos)
        out.append(stream[pos + wire.CHUNK_HEADER.size : pos + wire.CHUNK_HEADER.size + size])
        pos += wire.CHUNK_HEADER.size + size
    assert pos == len(stream)
    return out


def one_chunk(encoded: bytes) -> bytes:
    """A message as spice-vdagent writes it: in one chunk, however long (the encoders split
    it into chunks of MAX_CHUNK_DATA, as the host must)."""
    data = b"".join(chunks(encoded))
    return wire.CHUNK_HEADER.pack(wire.Port.CLIENT, len(data)) + data


class FakeVdagent:
    """spice-vdagent behind the SPICE agent's socket. It decodes everything the host writes
    (``stream`` keeps the bytes) but acts on it only while ``running``; it answers the host's
    announce, counts grab serials per selection as spice-vdagent does, serves the host's
    requests from its own clipboard, answers a MONITORS_CONFIG with a REPLY and records it."""

    def __init__(self, path: Path, *, running: bool = True, caps: frozenset[int] = VDAGENT):
        self.path = path
        self.caps = caps
        self.running = running
        self.host_caps: frozenset[int] | None = None  # since this agent started
        self.stream = bytearray()  # all the host wrote
        self.unheard = 0  # messages that came while the agent was not running
        self.grabs: list[wire.ClipboardGrab] = []  # the host's grabs taken
        self.stale: list[wire.ClipboardGrab] = []  # and those dropped for their serial
        self.requests: list[tuple[int, int]] = []  # (selection, type) the host asked for
        self.monitors: list[wire.MonitorsConfig] = []
        self.max_clipboard: int | None = None
        self.changed = asyncio.Condition()
        self._clipboard: dict[tuple[int, int], bytes] = {}  # the guest's own offer
        self._serials: dict[int, int] = {CLIPBOARD: 0, PRIMARY: 0}
        self._pastes: dict[tuple[int, int], asyncio.Future[bytes]] = {}
        self._decoder = wire.Decoder()
        self._writer: asyncio.StreamWriter | None = None
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> FakeVdagent:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        if self._writer is not None:
            self._writer.close()

    # -- what the guest does ---------------------------------------------------------------

    async def start(self) -> None:
        """The agent starts in the guest: it counts from 0 and announces itself."""
        self.running, self.host_caps = True, None
        self._serials = dict.fromkeys(self._serials, 0)
        await self._write(wire.encode_announce_capabilities(self.caps, request=True))

    def stop(self) -> None:
        self.running, self.host_caps = False, None

    async def copy(self, selection: int, data: Mapping[int, bytes]) -> None:
        """The guest's user copies ``data`` (type -> bytes): the agent grabs the selection."""
        await until(self.changed, lambda: self.host_caps is not None)
        self._clipboard = {k: v for k, v in self._clipboard.items() if k[0] != selection}
        self._clipboard.update({(selection, kind): value for kind, value in data.items()})
        serial = None
        if self._both(Cap.CLIPBOARD_GRAB_SERIAL):
            serial = self._serials[selection]
            self._serials[selection] += 1
        grab = wire.encode_clipboard_grab(list(data), selection=self._prefix(selection),
                                          serial=serial)  # fmt: skip
        await self._write(grab)

    async def paste(self, selection: int, kind: int) -> bytes:
        """The guest's user pastes the host's offer: the agent asks the host for it."""
        future = asyncio.get_running_loop().create_future()
        self._pastes[(selection, kind)] = future
        await self._write(wire.encode_clipboard_request(kind, selection=self._prefix(selection)))
        return await asyncio.wait_for(future, WAIT)

    # -- the protocol --------------------------------------------------------------------------

    def _both(self, cap: int) -> bool:
        return cap in self.caps and self.host_caps is not None and cap in self.host_caps

    def _prefix(self, selection: int) -> int | None:
        return selection if self._both(Cap.CLIPBOARD_SELECTION) else None

    async def _write(self, encoded: bytes) -> None:
        assert self._writer is not None, "the supervisor never connected"
        self._writer.write(one_chunk(encoded))
        await self._writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        while data := await reader.read(1 << 16):
            self.stream += data
            for message in self._decoder.feed(data):
                if self.running:
                    await self._on(message)
                else:
                    self.unheard += 1
            await notify(self.changed)

    async def _on(self, message: wire.AgentMessage) -> None:
        kind, body = message.type, message.data
        selection = self._both(Cap.CLIPBOARD_SELECTION)
        if kind == MessageType.ANNOUNCE_CAPABILITIES:
            caps = wire.parse_capabilities(body)
            self.host_caps = caps.caps
            if caps.request:  # the host (re)started: both count grabs from 0 again
                self._serials = dict.fromkeys(self._serials, 0)
                await self._write(wire.encode_announce_capabilities(self.caps, request=False))
        elif kind == MessageType.MAX_CLIPBOARD:
            self.max_clipboard = wire.parse_max_clipboard(body)
        elif kind == MessageType.CLIPBOARD_GRAB:
            serial = self._both(Cap.CLIPBOARD_GRAB_SERIAL)
            grab = wire.parse_clipboard_grab(body, selection=selection, serial=serial)
            if grab.serial is not None and grab.serial != self._serials[grab.selection]:
                self.stale.append(grab)
                return
            if grab.serial is not None:
                self._serials[grab.selection] += 1
            self.grabs.append(grab)
        elif kind == MessageType.CLIPBOARD_REQUEST:
            request = wire.parse_clipboard_request(body, selection=selection)
            self.requests.append((request.selection, request.type))
            value = self._clipboard.get((request.selection, request.type), b"")
            prefix = self._prefix(request.selection)
            await self._write(wire.encode_clipboard(request.type, value, selection=prefix))
        elif kind == MessageType.CLIPBOARD:
            clip = wire.parse_clipboard(body, selection=selection)
            self._pastes.pop((clip.selection, clip.type)).set_result(clip.data)
        elif kind == MessageType.MONITORS_CONFIG:
            self.monitors.append(wire.parse_monitors_config(body))
            reply = struct.pack("<II", MessageType.MONITORS_CONFIG, wire.REPLY_SUCCESS)
            await self._write(wire.encode_message(MessageType.REPLY, reply))


# -- the supervisor, served ------------------------------------------------------------------


@dataclass
class Rig:
    supervisor: Supervisor
    hello: dict[str, Any]
    session: GuestSession
    qga_fake: FakeQemuGA | None
    vdagent_fake: FakeVdagent | None

    @property
    def qga(self) -> FakeQemuGA:
        assert self.qga_fake is not None
        return self.qga_fake

    @property
    def vdagent(self) -> FakeVdagent:
        assert self.vdagent_fake is not None
        return self.vdagent_fake

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        """What the CLI and web do: client.call, in a thread (it blocks)."""
        return await asyncio.to_thread(client.call, self.supervisor.bundle, op, **args)

    async def refused(self, op: str, **args: Any) -> errors.VMDeskError:
        with pytest.raises(errors.VMDeskError) as caught:
            await self.call(op, **args)
        return caught.value

    async def generation(self) -> int:
        """The clipboard's generation now (a watch of a generation never seen returns it)."""
        return int((await self.call("clipboard_watch", seen=-1, wait=0))["generation"])

    async def guest_copies(self, selection: int, data: Mapping[int, bytes]) -> dict[str, Any]:
        """The guest grabs ``selection``; returns the clipboard_watch that saw it."""
        seen = await self.generation()
        await self.vdagent.copy(selection, data)
        return await self.call("clipboard_watch", seen=seen, wait=WAIT)

    def events(self) -> list[tuple[str, Any]]:
        lines = self.supervisor.files.events.read_text().splitlines()
        return [(e["event"], e.get("data")) for e in map(json.loads, lines)]


@contextlib.asynccontextmanager
async def served(
    tmp_path: Path,
    session: GuestSession,
    settings: Mapping[str, Any] | None = None,
    *,
    qga: bool = True,
    spice: Literal["running", "not started", "absent"] = "running",
    guest_caps: frozenset[int] = VDAGENT,
    caps: Capabilities | None = None,
) -> AsyncIterator[Rig]:
    """The real Supervisor running ``session`` for a VM configured with ``settings``, its
    agents' sockets held by the fakes (started before the supervisor opens its channels).
    On the way out the fake hypervisor exits, and the supervisor ends with it."""
    config = vmconfig.from_dict({"name": "vm", **(settings or {})})
    bundle = Bundle.create(tmp_path / "vm.vmdesk", config)
    hello: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    supervisor = Supervisor(bundle, bundle.load(), session, hello.set_result,
                            capabilities=caps or QemuEngine().capabilities())  # fmt: skip
    sockets = supervisor.sockets
    sockets.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as fakes:
        qga_fake = vdagent_fake = None
        if qga:
            qga_fake = await fakes.enter_async_context(FakeQemuGA(sockets.guest_agent, session.log))
        if spice != "absent":
            vdagent = FakeVdagent(sockets.spice_agent, running=spice == "running", caps=guest_caps)
            vdagent_fake = await fakes.enter_async_context(vdagent)
        with bundle.lock("serving the agents' protocol tests"):
            task = asyncio.create_task(supervisor.run())
            try:
                first: set[asyncio.Future[Any]] = {task, hello}
                await asyncio.wait(first, timeout=10, return_when=asyncio.FIRST_COMPLETED)
                if task.done():
                    task.result()  # its failure to start
                yield Rig(supervisor, hello.result(), session, qga_fake, vdagent_fake)
            finally:
                session.end()
                await asyncio.wait_for(task, 10)
                supervisor.close()


# -- the SPICE agent: the clipboard -----------------------------------------------------------


def test_clipboard_get_asks_the_guest_for_what_it_copied(tmp_path: Path) -> None:
    session = GuestSession()

    async def test() -> tuple[FakeVdagent, list[dict[str, Any]]]:
        async with served(tmp_path, session) as rig:
            empty = await rig.call("clipboard_get", wait=WAIT)  # waits for the agent's answer
            watched = await rig.guest_copies(CLIPBOARD, {TEXT: "héllo\nwörld\n".encode()})
            got = await rig.call("clipboard_get")
            none_of_that = await rig.call("clipboard_get", type="image/png")
            await rig.guest_copies(PRIMARY, {TEXT: b"selected", PNG: b"\x89PNG..."})
            primary = await rig.call("clipboard_get", selection="primary", type="png")
            return rig.vdagent, [empty, watched, got, none_of_that, primary]

    vdagent, (empty, watched, got, none_of_that, primary) = run(test)
    assert empty == {"ok": True, "owner": "none", "types": [], "type": None, "data": None,
                     "generation": empty["generation"]}  # fmt: skip
    assert watched == {"ok": True, "generation": empty["generation"] + 1, "owner": "guest",
                       "types": [TEXT_MIME]}  # fmt: skip
    assert (got["owner"], got["types"], got["type"]) == ("guest", [TEXT_MIME], TEXT_MIME)
    assert unb64(got["data"]).decode() == "héllo\nwörld\n"
    assert got["generation"] == watched["generation"]
    assert none_of_that["type"] is None and none_of_that["data"] is None  # not on offer
    assert none_of_that["types"] == [TEXT_MIME]
    assert (primary["types"], primary["type"]) == ([TEXT_MIME, "image/png"], "image/png")
    assert unb64(primary["data"]) == b"\x89PNG..."
    # Fetched on demand, one request per get that found a type; none for the missing PNG.
    assert vdagent.requests == [(CLIPBOARD, TEXT), (PRIMARY, PNG)]
    assert vdagent.max_clipboard == 64 << 20  # the host told the guest its limit


def test_clipboard_watch_waits_for_the_guests_next_grab(tmp_path: Path) -> None:
    session = GuestSession()

    async def test() -> tuple[int, dict[str, Any], dict[str, Any], float]:
        async with served(tmp_path, session) as rig:
            await rig.call("clipboard_get", wait=WAIT)
            seen = await rig.generation()
            started = time.monotonic()
            quiet = await rig.call("clipboard_watch", seen=seen, wait=0.2)
            waited = time.monotonic() - started
            watch = asyncio.create_task(rig.call("clipboard_watch", seen=seen, wait=WAIT))
            await rig.vdagent.copy(CLIPBOARD, {PNG: b"\x89PNG"})
            return seen, quiet, await watch, waited

    seen, quiet, changed, waited = run(test)
    assert quiet == {"ok": True, "generation": seen, "owner": "none", "types": []}
    assert waited >= 0.2  # it waited for a change that did not come
    assert changed == {"ok": True, "generation": seen + 1, "owner": "guest",
                       "types": ["image/png"]}  # fmt: skip


def test_clipboard_set_offers_the_host_data_and_serves_the_guests_paste(tmp_path: Path) -> None:
    session = GuestSession()

    async def test() -> tuple[FakeVdagent, list[dict[str, Any]], list[bytes]]:
        async with served(tmp_path, session) as rig:
            vdagent = rig.vdagent
            await rig.call("clipboard_get", wait=WAIT)
            text = await rig.call("clipboard_set", data=b64(b"from the host\n"))
            image = await rig.call("clipboard_set", data=b64(b"\x89PNG\r\n"), type="image/png",
                                   selection="primary")  # fmt: skip
            await until(vdagent.changed, lambda: len(vdagent.grabs) == 2)
            pasted = [await vdagent.paste(CLIPBOARD, TEXT), await vdagent.paste(PRIMARY, PNG),
                      await vdagent.paste(PRIMARY, TEXT)]  # fmt: skip
            own = await rig.call("clipboard_get")
            return vdagent, [text, image, own], pasted

    vdagent, (text, image, own), pasted = run(test)
    assert text == image == {"ok": True, "delivered": True}
    assert vdagent.grabs == [
        wire.ClipboardGrab(selection=CLIPBOARD, serial=0, types=(TEXT,)),
        wire.ClipboardGrab(selection=PRIMARY, serial=0, types=(PNG,)),
    ]
    assert vdagent.stale == []
    # A type the host did not offer gets an empty answer, so the guest's paste ends.
    assert pasted == [b"from the host\n", b"\x89PNG\r\n", b""]
    # The host owns the clipboard now: a get answers from its own offer, not the guest.
    assert (own["owner"], own["type"], unb64(own["data"])) == ("host", TEXT_MIME,
                                                               b"from the host\n")  # fmt: skip
    assert vdagent.requests == []


def test_a_windows_guest_gets_crlf_text_and_its_crlf_comes_back_as_lf(tmp_path: Path) -> None:
    session = GuestSession()

    async def test() -> tuple[bytes, bytes]:
        async with served(tmp_path, session, guest_caps=WINDOWS) as rig:
            await rig.call("clipboard_get", wait=WAIT)
            await rig.call("clipboard_set", data=b64(b"one\ntwo\r\n"))
            await until(rig.vdagent.changed, lambda: bool(rig.vdagent.grabs))
            pasted = await rig.vdagent.paste(CLIPBOARD, TEXT)
            await rig.guest_copies(CLIPBOARD, {TEXT: b"three\r\nfour\r\n"})
            return pasted, unb64((await rig.call("clipboard_get"))["data"])

    assert run(test) == (b"one\r\ntwo\r\n", b"three\nfour\n")


def test_a_mebibyte_of_text_and_a_4_mib_image_cross_intact(tmp_path: Path) -> None:
    session = GuestSession()
    lines = b"".join(f"line {i:07d} \u2713\n".encode() for i in range(61681))
    text = lines[: 1 << 20]
    image = b"\x89PNG\r\n\x1a\n" + random.Random(7).randbytes((4 << 20) - 8)

    async def test() -> tuple[FakeVdagent, dict[str, Any], dict[str, Any], bytes]:
        async with served(tmp_path, session) as rig:
            vdagent = rig.vdagent
            await rig.guest_copies(CLIPBOARD, {TEXT: text})
            got_text = await rig.call("clipboard_get", wait=WAIT, timeout=30)
            await rig.guest_copies(CLIPBOARD, {PNG: image})
            got_image = await rig.call("clipboard_get", wait=WAIT, timeout=30)
            await rig.call("clipboard_set", data=b64(image), type="image/png", timeout=30)
            await until(vdagent.changed, lambda: bool(vdagent.grabs))
            return vdagent, got_text, got_image, await vdagent.paste(CLIPBOARD, PNG)

    vdagent, got_text, got_image, pasted = run(test)
    assert len(text) == 1 << 20 and text.endswith("\u2713".encode())
    assert got_text["type"] == TEXT_MIME and unb64(got_text["data"]) == text
    assert got_image["type"] == "image/png" and unb64(got_image["data"]) == image
    assert pasted == image
    # What the host wrote came in chunks the guest's daemon takes.
    sizes = [len(c) for c in chunks(bytes(vdagent.stream))]
    assert max(sizes) <= wire.MAX_CHUNK_DATA and len(sizes) > (4 << 20) // wire.MAX_CHUNK_DATA


# -- the SPICE agent: the display, and the agent coming and going ----------------------------


def test_display_size_sends_the_guest_a_monitors_config(tmp_path: Path) -> None:
    session = GuestSession()

    async def test() -> tuple[dict[str, Any], list[wire.MonitorsConfig]]:
        async with served(tmp_path, session) as rig:
            await rig.call("clipboard_get", wait=WAIT)  # the agent has answered
            sized = await rig.call("display_size", width=1920, height=1080)
            await until(rig.vdagent.changed, lambda: bool(rig.vdagent.monitors))
            return sized, rig.vdagent.monitors

    sized, monitors = run(test)
    assert sized == {"ok": True, "sent": True}
    full_hd = wire.Monitor(width=1920, height=1080, depth=32, x=0, y=0)
    assert monitors == [wire.MonitorsConfig(flags=wire.MONITORS_FLAG_USE_POS, monitors=(full_hd,))]


def test_after_the_guest_agent_restarts_the_clipboard_and_display_work_again(
    tmp_path: Path,
) -> None:
    session = GuestSession()
    layout = wire.MonitorsConfig(wire.MONITORS_FLAG_USE_POS, (wire.Monitor(1024, 768),))

    async def test() -> tuple[FakeVdagent, list[Any]]:
        async with served(tmp_path, session) as rig:
            vdagent = rig.vdagent
            await rig.guest_copies(CLIPBOARD, {TEXT: b"before"})
            before = await rig.call("clipboard_get")
            await rig.call("display_size", width=1024, height=768)
            await until(vdagent.changed, lambda: len(vdagent.monitors) == 1)
            # spice-vdagentd stops (the guest's session ends): the guest closes the port.
            vdagent.stop()
            await session.port("vdagent0", opened=False)
            gone = await rig.refused("clipboard_get", wait=0.2)
            forgotten = await rig.call("clipboard_watch", seen=-1, wait=0)
            # It starts again: the port opens, and the agent announces itself.
            await session.port("vdagent0", opened=True)
            await vdagent.start()
            watched = await rig.guest_copies(CLIPBOARD, {TEXT: b"after"})
            after = await rig.call("clipboard_get")
            offered = await rig.call("clipboard_set", data=b64(b"host, after"))
            await until(vdagent.changed, lambda: bool(vdagent.grabs))
            pasted = await vdagent.paste(CLIPBOARD, TEXT)
            await until(vdagent.changed, lambda: len(vdagent.monitors) == 2)
            return vdagent, [before, gone, forgotten, watched, after, offered, pasted,
                             rig.events()]  # fmt: skip

    vdagent, (before, gone, forgotten, watched, after, offered, pasted, logged) = run(test)
    assert unb64(before["data"]) == b"before"
    assert type(gone) is errors.GuestTimeout and "SPICE agent did not answer" in gone.message
    assert "spice-vdagent" in (gone.hint or "")
    assert (forgotten["owner"], forgotten["types"]) == ("none", [])  # the guest's grab died
    assert watched["owner"] == "guest" and unb64(after["data"]) == b"after"
    assert offered == {"ok": True, "delivered": True} and pasted == b"host, after"
    # The agent counted from 0 again after its restart, and the host with it.
    assert vdagent.stale == [] and [g.serial for g in vdagent.grabs] == [1]
    assert vdagent.monitors == [layout, layout]  # the layout is sent again to the new agent
    ports = [data for name, data in logged if name == "VSERPORT_CHANGE"]
    assert ports == [{"id": "vdagent0", "open": False}, {"id": "vdagent0", "open": True}]


def test_an_offer_made_before_the_guest_agent_runs_reaches_it_when_it_announces_itself(
    tmp_path: Path,
) -> None:
    session = GuestSession()

    async def test() -> tuple[FakeVdagent, list[dict[str, Any]], bytes]:
        async with served(tmp_path, session, spice="not started") as rig:
            vdagent = rig.vdagent
            offered = await rig.call("clipboard_set", data=b64(b"typed before the guest booted"))
            sized = await rig.call("display_size", width=1600, height=900)
            await until(vdagent.changed, lambda: vdagent.unheard >= 1)  # the host's hello
            await vdagent.start()
            await until(vdagent.changed, lambda: bool(vdagent.grabs and vdagent.monitors))
            pasted = await vdagent.paste(CLIPBOARD, TEXT)
            own = await rig.call("clipboard_get")
            return vdagent, [offered, sized, own], pasted

    vdagent, (offered, sized, own), pasted = run(test)
    assert offered == {"ok": True, "delivered": False}  # kept for the agent to come
    assert sized == {"ok": True, "sent": False}
    assert vdagent.unheard == 1  # only the host's announce went unheard: nothing was lost
    assert vdagent.grabs == [wire.ClipboardGrab(selection=CLIPBOARD, serial=0, types=(TEXT,))]
    assert pasted == b"typed before the guest booted"
    assert vdagent.monitors == [wire.MonitorsConfig(wire.MONITORS_FLAG_USE_POS,
                                                    (wire.Monitor(1600, 900),))]  # fmt: skip
    assert own["owner"] == "host" and unb64(own["data"]) == pasted


# -- qemu-ga ---------------------------------------------------------------------------------


def test_guest_info_gives_the_guests_addresses_os_and_host_name(tmp_path: Path) -> None:
    session = GuestSession()

    async def test() -> dict[str, Any]:
        async with served(tmp_path, session) as rig:
            return await rig.call("guest_info", wait=WAIT)

    assert run(test) == {
        "ok": True,
        "agent": "connected",
        "addresses": [  # without loopback
            {"interface": "docker0", "family": "ipv4", "address": "172.17.0.1", "prefix": 16},
            {"interface": "enp0s1", "family": "ipv4", "address": "10.0.2.15", "prefix": 24},
            {"interface": "enp0s1", "family": "ipv6", "address": "fe80::5054:ff:fe12:3456",
             "prefix": 64},
            {"interface": "enp0s1", "family": "ipv6", "address": "2a01:4f8:c17:1::15",
             "prefix": 64},
        ],
        "ipv4": "10.0.2.15",  # the VM's own link, not the container bridge listed first
        "ipv6": "2a01:4f8:c17:1::15",  # never link-local
        "os": {"name": "Debian GNU/Linux 12 (bookworm)", "id": "debian", "version": "12",
               "kernel": "6.1.0-18-amd64"},
        "host_name": "desk-guest",
    }  # fmt: skip


def test_the_os_the_agent_reports_is_recorded_for_lists_once_its_port_opens(
    tmp_path: Path,
) -> None:
    session = GuestSession()

    async def test() -> tuple[bool, Any]:
        async with served(tmp_path, session) as rig:
            record = rig.supervisor.files.guest_os
            before = record.exists()
            await session.port("qga0", True)
            await until_file(record)
            return before, json.loads(record.read_text())

    before, record = run(test)
    assert before is False
    assert (record["name"], record["id"], record["version"]) == (
        "Debian GNU/Linux 12 (bookworm)", "debian", "12")  # fmt: skip
    assert abs(record["seen"] - time.time()) < 60
    # The VM has stopped; the list still says what it last ran.
    library = tmp_path
    [row] = listing.summaries(library)
    assert row["os"] == "Debian GNU/Linux 12 (bookworm)"
    assert listing.table([row]).splitlines()[1].endswith("Debian GNU/Linux 12 (bookworm)")


async def until_file(path: Path) -> None:
    deadline = time.monotonic() + WAIT
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} within {WAIT} s"
        await asyncio.sleep(0.01)


def test_guest_info_from_an_agent_that_stopped_answering_says_so_within_the_wait(
    tmp_path: Path,
) -> None:
    session = GuestSession()

    async def test() -> tuple[dict[str, Any], dict[str, Any], float, list[str]]:
        async with served(tmp_path, session) as rig:
            answering = await rig.call("guest_info", wait=WAIT)
            rig.qga.mute = True  # the guest is paused, or qemu-ga stopped in it
            asked = len(rig.qga.requests)
            started = time.monotonic()
            silent = await rig.call("guest_info", wait=0.3)
            return answering, silent, time.monotonic() - started, rig.qga.commands()[asked:]

    answering, silent, took, asked = run(test)
    assert answering["agent"] == "connected"
    assert silent == {"ok": True, "agent": "not answering", "addresses": [], "ipv4": None,
                      "ipv6": None, "os": None, "host_name": None}  # fmt: skip
    assert 0.3 <= took < 1.5
    assert asked == ["guest-network-get-interfaces"]  # and nothing more once it went unanswered


def test_guest_exec_runs_the_command_with_its_input_and_returns_its_output(
    tmp_path: Path,
) -> None:
    session = GuestSession()

    async def test() -> tuple[dict[str, Any], list[Any], int]:
        async with served(tmp_path, session) as rig:
            reply = await rig.call("guest_exec", argv=["tr", "a-z", "A-Z"],
                                   input=b64(b"hello\n"), wait=WAIT)  # fmt: skip
            return reply, rig.qga.arguments("guest-exec"), rig.qga.polls

    reply, sent, polls = run(test)
    assert sent == [{"path": "tr", "arg": ["a-z", "A-Z"], "capture-output": True,
                     "input-data": b64(b"hello\n")}]  # fmt: skip
    assert polls == 2  # running at the first poll, exited at the second
    assert reply == {"ok": True, "exit_code": 3, "signal": None, "stdout": b64(b"HELLO\n\0\xff"),
                     "stderr": b64(b"warn\n"), "truncated": False}  # fmt: skip


def test_a_refusal_by_the_guest_agent_keeps_its_class_across_the_socket(tmp_path: Path) -> None:
    session = GuestSession()

    async def test() -> errors.VMDeskError:
        async with served(tmp_path, session) as rig:
            rig.qga.refuse["guest-exec"] = "Failed to execute child process “nope” (ENOENT)"
            return await rig.refused("guest_exec", argv=["nope"], wait=WAIT)

    error = run(test)
    assert type(error) is errors.GuestAgentError and error.error_class == "GenericError"
    assert "guest-exec" in error.message and "“nope”" in error.message


def test_a_disk_only_snapshot_freezes_the_guests_file_systems_around_it(tmp_path: Path) -> None:
    session = GuestSession()

    async def test() -> tuple[list[dict[str, Any]], list[tuple[str, Any]]]:
        async with served(tmp_path, session) as rig:
            quiet = await rig.call("snapshot_save", tag="disks", disk_only=True)
            full = await rig.call("snapshot_save", tag="full")  # with RAM: never frozen
            rig.qga.refuse["guest-fsfreeze-freeze"] = "failed to freeze /: Device busy"
            busy = await rig.call("snapshot_save", tag="busy", disk_only=True)
            return [quiet, full, busy], rig.events()

    (quiet, full, busy), logged = run(test)
    assert [r["quiesced"] for r in (quiet, full, busy)] == [True, False, False]
    assert session.log == [
        "guest-fsfreeze-freeze", "save_snapshot", "guest-fsfreeze-thaw",
        "save_snapshot",
        "guest-fsfreeze-freeze", "save_snapshot",  # refused, so nothing to thaw
    ]  # fmt: skip
    assert [c for c in session.calls if c[0] == "save_snapshot"] == [
        ("save_snapshot", "disks", True), ("save_snapshot", "full", False),
        ("save_snapshot", "busy", True)]  # fmt: skip
    assert [d for e, d in logged if e == "SNAPSHOT_SAVE"] == [
        {"tag": "disks", "quiesced": True}, {"tag": "full"},
        {"tag": "busy", "quiesced": False}]  # fmt: skip


def test_a_failed_disk_only_snapshot_still_thaws_the_guest(tmp_path: Path) -> None:
    session = GuestSession()
    session.fail["save_snapshot"] = errors.StorageError("the disk is full", hint="free space")

    async def test() -> tuple[errors.VMDeskError, bool]:
        async with served(tmp_path, session) as rig:
            error = await rig.refused("snapshot_save", tag="s", disk_only=True)
            return error, rig.qga.frozen

    error, frozen = run(test)
    assert type(error) is errors.StorageError and error.hint == "free space"
    assert session.log == ["guest-fsfreeze-freeze", "save_snapshot", "guest-fsfreeze-thaw"]
    assert frozen is False


def test_reverting_to_a_snapshot_sets_the_guests_clock(tmp_path: Path) -> None:
    session = GuestSession()

    async def test() -> tuple[dict[str, Any], list[Any]]:
        async with served(tmp_path, session) as rig:
            reply = await rig.call("snapshot_load", tag="s1")
            await until(rig.qga.changed, lambda: "guest-set-time" in session.log)
            return reply, rig.qga.arguments("guest-set-time")

    reply, sent = run(test)
    assert reply["ok"] is True and session.log == ["load_snapshot", "guest-set-time"]
    assert len(sent) == 1 and abs(sent[0]["time"] - time.time_ns()) < 5e9  # the host's now


def test_resuming_from_a_suspend_sets_the_guests_clock(tmp_path: Path) -> None:
    session = GuestSession(restoring=True)

    async def test() -> tuple[dict[str, Any], list[Any]]:
        async with served(tmp_path, session) as rig:
            await until(rig.qga.changed, lambda: "guest-set-time" in session.log)
            return rig.hello, rig.qga.arguments("guest-set-time")

    hello, sent = run(test)
    assert hello["resumed"] is True
    assert session.log == ["finish_restore", "guest-set-time"]
    assert len(sent) == 1 and abs(sent[0]["time"] - time.time_ns()) < 5e9


def test_stop_asks_the_guest_agent_when_the_guest_ignores_the_power_button(
    tmp_path: Path,
) -> None:
    obeys, silent = GuestSession(deaf=True), GuestSession(deaf=True)

    async def test(session: GuestSession, where: str) -> tuple[dict[str, Any], list[Any]]:
        (tmp_path / where).mkdir()
        async with served(tmp_path / where, session) as rig:
            rig.qga.on_shutdown = session.end  # the guest powers off
            rig.qga.mute = session is silent
            reply = await rig.call("stop", stop_timeout=0.4)
            return reply, rig.qga.arguments("guest-shutdown")

    assert run(lambda: test(obeys, "obeys")) == ({"ok": True, "forced": False},
                                                 [{"mode": "powerdown"}])  # fmt: skip
    assert obeys.log == ["powerdown", "guest-shutdown"]  # and no quit: it was not forced
    assert run(lambda: test(silent, "silent"))[0] == {"ok": True, "forced": True}
    assert silent.log == ["powerdown", "quit"]  # no agent answered either: the plug is pulled


# -- errors keep their class -----------------------------------------------------------------


def test_the_clipboard_switched_off_is_unsupported_but_the_display_still_follows(
    tmp_path: Path,
) -> None:
    session = GuestSession()

    async def test() -> tuple[list[errors.VMDeskError], dict[str, Any], FakeVdagent]:
        async with served(tmp_path, session, {"clipboard": False}) as rig:
            refusals = [await rig.refused("clipboard_get"),
                        await rig.refused("clipboard_set", data=b64(b"secret")),
                        await rig.refused("clipboard_watch", wait=0.1)]  # fmt: skip
            line = protocol.encode_request("clipboard_get", {})
            on_the_wire = await raw(rig.supervisor, line)
            await rig.call("display_size", width=800, height=600)
            await until(rig.vdagent.changed, lambda: bool(rig.vdagent.monitors))
            return refusals, on_the_wire, rig.vdagent

    refusals, on_the_wire, vdagent = run(test)
    for error in refusals:
        assert type(error) is errors.Unsupported and error.exit_code == 7
        assert error.message == "clipboard sharing is off for VM 'vm'"
        assert "`vmdesk edit vm --clipboard`" in (error.hint or "")
    assert on_the_wire["ok"] is False and on_the_wire["kind"] == "Unsupported"
    assert vdagent.grabs == [] and vdagent.requests == []  # nothing of the host's was offered
    assert vdagent.monitors[0].monitors == (wire.Monitor(800, 600),)


def test_without_a_guest_agent_channel_exec_and_info_are_unsupported(tmp_path: Path) -> None:
    session = GuestSession()

    async def test() -> tuple[list[errors.VMDeskError], dict[str, Any], list[str]]:
        # qemu-ga listens, but this VM's config has no channel for it.
        async with served(tmp_path, session, {"guest_agent": False}) as rig:
            refusals = [await rig.refused("guest_exec", argv=["true"]),
                        await rig.refused("guest_info", wait=0.2)]  # fmt: skip
            snapshot = await rig.call("snapshot_save", tag="s", disk_only=True)
            return refusals, snapshot, rig.qga.commands()

    refusals, snapshot, asked = run(test)
    for error in refusals:
        assert type(error) is errors.Unsupported and error.exit_code == 7
        assert error.message == "VM 'vm' has no guest agent channel"
        assert "`vmdesk edit vm --guest-agent`" in (error.hint or "")
    assert snapshot["quiesced"] is False and session.log == ["save_snapshot"]
    assert asked == []  # never contacted


def test_a_run_without_the_spice_agents_port_has_no_clipboard_or_resizing(
    tmp_path: Path,
) -> None:
    session = GuestSession()

    async def test() -> list[errors.VMDeskError]:
        async with served(tmp_path, session, spice="absent") as rig:
            return [await rig.refused("clipboard_get"),
                    await rig.refused("display_size", width=800, height=600)]  # fmt: skip

    clipboard, display = run(test)
    assert type(clipboard) is errors.Unsupported
    assert clipboard.message == (
        "VM 'vm' has no clipboard channel that VM-Desk speaks on in this run"
    )
    assert "`vmdesk stop vm`" in (clipboard.hint or "")
    assert type(display) is errors.Unsupported and "no SPICE agent channel" in display.message


def test_an_engine_without_agent_sockets_has_no_guest_agent(tmp_path: Path) -> None:
    session = GuestSession()
    # The vz engine carries the agents' channels itself, not on sockets for the supervisor.
    caps = QemuEngine().capabilities()
    no_sockets = dataclasses.replace(caps, agent_sockets=False)

    async def test() -> list[errors.VMDeskError]:
        async with served(tmp_path, session, caps=no_sockets) as rig:
            return [await rig.refused("guest_info"), await rig.refused("clipboard_get")]

    info, clipboard = run(test)
    assert type(info) is errors.Unsupported and "no guest agent channel" in info.message
    assert type(clipboard) is errors.Unsupported and "no clipboard channel" in clipboard.message


def test_what_the_agents_cannot_take_is_refused_before_they_are_asked(tmp_path: Path) -> None:
    session = GuestSession()

    async def test() -> tuple[list[errors.VMDeskError], FakeVdagent, list[str]]:
        async with served(tmp_path, session) as rig:
            refusals = [await rig.refused("clipboard_set", data=b64(b"<b>"), type="text/html"),
                        await rig.refused("clipboard_get", selection="secondary"),
                        await rig.refused("guest_exec", argv=[]),
                        await rig.refused("guest_exec", argv=["echo", 1])]  # fmt: skip
            return refusals, rig.vdagent, rig.qga.commands()

    (html, secondary, nothing, number), vdagent, asked = run(test)
    assert all(type(e) is errors.Unsupported for e in (html, secondary, nothing, number))
    assert html.message == "clipboard type 'text/html' is not one the agents know"
    assert "image/png" in (html.hint or "") and TEXT_MIME in (html.hint or "")
    assert secondary.message == "no clipboard selection 'secondary'"
    assert nothing.message == number.message == "exec needs a command"
    assert vdagent.grabs == [] and "guest-exec" not in asked
