"""The SPICE agent's host side on one VM's socket: the clipboard and the display size.

The VM's supervisor owns one :class:`SpiceChannel`: it connects to the engine's end of the
``com.redhat.spice.0`` port, feeds what it reads to an :class:`AgentSession` and writes
back what that says. The guest's agent comes and goes (a guest reboot, a restart of
spice-vdagentd, a resume): the engine reports the port opening and closing, and each
opening starts the conversation afresh while the host's offer is kept and announced again.

Each closing also ends the connection to the engine, and a new one is made: bytes the host
wrote that the guest had not read (the rest of a message cut off by a reboot, asks sent
while nobody listened) die with the old socket, so the next agent reads our greeting from
its first byte. spice-vdagentd does not resynchronise: a message read from its middle can
stall it for good, waiting for a body that its bogus header promised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path

from vmdesk.core.errors import GuestTimeout
from vmdesk.integration import spice_agent as agent
from vmdesk.integration import spice_wire as wire
from vmdesk.integration.spice_agent import AgentNotReady, Owner
from vmdesk.integration.spice_wire import ClipboardType, Selection

# What VM-Desk passes either way; spice-gtk's own default is 100 MiB.
MAX_CLIPBOARD = 64 << 20
# The order in which a guest's offer is taken: text first, then the image types.
PREFERRED = (ClipboardType.UTF8_TEXT, ClipboardType.IMAGE_PNG, ClipboardType.IMAGE_BMP,
             ClipboardType.IMAGE_JPG, ClipboardType.IMAGE_TIFF)  # fmt: skip
TYPE_NAMES = {
    ClipboardType.UTF8_TEXT: "text/plain;charset=utf-8",
    ClipboardType.IMAGE_PNG: "image/png",
    ClipboardType.IMAGE_BMP: "image/bmp",
    ClipboardType.IMAGE_JPG: "image/jpeg",
    ClipboardType.IMAGE_TIFF: "image/tiff",
}
# Lines in the supervisor's log (its stderr) about a guest agent's bad bytes: every one of
# the first few, then only the 2**n-th, so a guest that sends nothing else cannot fill it.
_LOGGED_IN_FULL = 10
ASK_EVERY = 5.0  # seconds between asks of a guest agent that has not announced itself
# How long a closed port stays closed before the connection is made anew: a guest agent
# that reopens at once (it does after any error) must not see the host go away under it.
RECONNECT_AFTER = 1.0
REVIVE_ATTEMPTS = 5  # connecting again after the engine dropped the connection
log = logging.getLogger(__name__)
_NO_AGENT_HINT = (
    "is spice-vdagent running in the guest's desktop session? (`systemctl status "
    "spice-vdagentd` in the guest; Debian and Ubuntu: `apt install spice-vdagent`)"
)


class SpiceChannel:
    def __init__(self, path: Path, *, max_clipboard: int = MAX_CLIPBOARD) -> None:
        self.path = path
        self.session = agent.AgentSession(max_clipboard=max_clipboard)
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._asking: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._reviving: asyncio.Task[None] | None = None
        self._closing = False
        self._port_open: bool | None = None  # the guest's side of the port, when known
        self._ready = asyncio.Event()  # the guest's agent announced its capabilities
        self._changed = asyncio.Condition()  # a guest grab or release, for --sync
        self._generation = 0  # counts the guest's grabs and releases
        self._waiting: dict[tuple[int, int], asyncio.Future[bytes]] = {}
        self.restarts = 0  # how often the guest's agent came back (for status)
        self.problems = 0  # how often the guest's bytes broke the agent protocol

    # -- the connection --------------------------------------------------------------------

    async def open(self) -> None:
        """Connect to the engine's end of the port and say hello: a guest agent that is
        there already (after a resume) answers; one that starts later announces itself."""
        await self._connect()
        self._asking = asyncio.create_task(self._ask_until_ready())
        await self._send(self.session.connected())

    async def _connect(self) -> None:
        """Connect, and only then let go of the old connection: the new one waits in the
        engine's backlog until the old one is gone (it takes one client at a time). The
        one wait is the connect, so a cancelled reconnect leaves the old connection be."""
        reader, writer = await asyncio.open_unix_connection(str(self.path))
        old_pump, old_writer = self._pump, self._writer
        self._writer = writer
        self._pump = asyncio.create_task(self._read(reader))
        if old_pump is not None:
            old_pump.cancel()
        if old_writer is not None:
            old_writer.close()

    async def _reconnect_while_closed(self) -> None:
        """The port has stayed closed: connect again, and what the old connection still
        held unread goes with it."""
        await asyncio.sleep(RECONNECT_AFTER)
        if self._port_open is not False:
            return
        try:
            await self._connect()
        except OSError as exc:  # the engine is going away
            log.warning("could not reconnect to the SPICE agent's socket %s: %s", self.path, exc)

    async def _ask_until_ready(self) -> None:
        """While the guest's agent has not announced itself on an open (or unknown) port,
        ask it again now and then: an ask that reached it before it listened is lost, and
        it would not announce itself again on its own."""
        while True:
            await asyncio.sleep(ASK_EVERY)
            if not self._ready.is_set() and self._port_open is not False:
                await self._send(wire.encode_announce_capabilities(self.session.host_caps,
                                                                   request=True))  # fmt: skip

    async def close(self) -> None:
        self._closing = True
        for task in (self._asking, self._reconnecting, self._reviving, self._pump):
            await _cancel(task)
        if self._writer is not None:
            self._writer.close()
        self._fail_waiting("the VM is ending")

    async def port_changed(self, opened: bool) -> None:
        """The guest opened (its agent started) or closed (it stopped) the port."""
        self._ready.clear()
        self._port_open = opened
        self._fail_waiting("the guest's agent went away")
        if opened:
            await _cancel(self._reconnecting)
            self.restarts += 1
            await self._send(self.session.connected())
        else:
            self.session.reset()
            if self._reconnecting is None or self._reconnecting.done():
                self._reconnecting = asyncio.create_task(self._reconnect_while_closed())
        await self._bump()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise GuestTimeout(
                f"the guest's SPICE agent did not answer within {timeout:.0f} s",
                hint=_NO_AGENT_HINT,
            ) from None

    async def _send(self, data: bytes) -> None:
        if data and self._writer is not None:
            self._writer.write(data)
            await self._writer.drain()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """Feed the guest's bytes to the session for as long as the port's socket lasts.
        Whatever the guest sends, this goes on: bytes that break the framing (or anything
        the session cannot take) are logged and the conversation starts afresh."""
        try:
            while data := await reader.read(1 << 16):
                try:
                    received = self.session.receive(data)
                except Exception as exc:  # broken framing: start the conversation again
                    self._problem(exc)
                    await self._restart()
                    continue
                await self._send(received.reply)
                for event in received.events:
                    await self._on(event)
        except OSError as exc:  # the engine's end went away
            log.warning("the SPICE agent's socket %s failed: %s", self.path, exc)
        self._ready.clear()
        self._fail_waiting("the SPICE agent's socket closed")
        if not self._closing and asyncio.current_task() is self._pump:
            self._reviving = asyncio.create_task(self._revive())

    async def _revive(self) -> None:
        """The engine ended the connection under a running VM (seen: a reset): connect
        again and greet the guest's agent anew, rather than leave the clipboard dead. An
        engine that refuses for a while is going away, and is let be."""
        for attempt in range(REVIVE_ATTEMPTS):
            await asyncio.sleep(RECONNECT_AFTER * (attempt + 1))
            try:
                await self._connect()
            except OSError:
                continue
            log.warning("connected to the SPICE agent's socket %s again", self.path)
            self.session.reset()
            if self._port_open is not False:
                await self._send(self.session.connected())
            return

    def _problem(self, exc: Exception) -> None:
        self.problems += 1
        count = self.problems
        if count <= _LOGGED_IN_FULL or count & (count - 1) == 0:
            hint = getattr(exc, "hint", None)
            log.warning(
                "the guest's SPICE agent sent bytes that break its protocol (%d so far): "
                "%s: %s%s; starting the conversation again",
                count, type(exc).__name__, exc, f" ({hint})" if hint else "",
            )  # fmt: skip

    async def _restart(self) -> None:
        """What the guest said before is out of step now: forget it and ask again."""
        self._ready.clear()
        self._fail_waiting("the guest's SPICE agent broke its protocol")
        await self._send(self.session.connected())
        await self._bump()

    async def _on(self, event: agent.Event) -> None:
        if isinstance(event, agent.GuestCapabilities):
            self._ready.set()
        elif isinstance(event, agent.ClipboardData):
            waiting = self._waiting.pop((event.selection, event.type), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(event.data)
        elif isinstance(event, agent.GuestGrabbed | agent.GuestReleased):
            await self._bump()

    async def _bump(self) -> None:
        async with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def _fail_waiting(self, why: str) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(AgentNotReady(why, hint=_NO_AGENT_HINT))
        self._waiting.clear()

    # -- the clipboard -----------------------------------------------------------------------

    def owner(self, selection: int = Selection.CLIPBOARD) -> tuple[str, tuple[int, ...]]:
        state = self.session.selection(selection)
        return state.owner.value, state.types

    async def offer(self, data: Mapping[int, bytes], selection: int = Selection.CLIPBOARD) -> None:
        """The host's clipboard is ``data`` now (type -> bytes); the guest pastes it."""
        await self._send(self.session.offer(selection, data))

    async def fetch(
        self, selection: int = Selection.CLIPBOARD, wanted: int | None = None, timeout: float = 10
    ) -> tuple[int, bytes] | None:
        """The guest's clipboard as (type, bytes): ``wanted`` or the first of
        :data:`PREFERRED` it offers; the host's own offer if the host owns it; None when
        the clipboard is empty."""
        state = self.session.selection(selection)
        if state.owner is Owner.NONE:
            return None
        order = [wanted] if wanted is not None else list(PREFERRED)  # the types we can name
        kind = next((t for t in order if t in state.types), None)
        if kind is None:
            return None
        if state.owner is Owner.HOST:
            return kind, self.session.host_data(selection, kind)
        future = self._waiting.get((selection, kind))
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[(selection, kind)] = future
            await self._send(self.session.request(selection, kind))
        try:
            return kind, await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            self._waiting.pop((selection, kind), None)
            raise GuestTimeout(
                f"the guest's agent did not send its clipboard within {timeout:.0f} s",
                hint=_NO_AGENT_HINT,
            ) from None

    async def changed(self, seen: int, timeout: float) -> int:
        """Wait until the guest grabs or releases a selection after ``seen`` (a
        :attr:`generation`), or ``timeout``; returns the generation then."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._generation != seen), timeout
                )
            return self._generation

    @property
    def generation(self) -> int:
        return self._generation

    # -- the display -------------------------------------------------------------------------

    async def resize(self, width: int, height: int) -> None:
        """Ask the guest for one output of ``width`` x ``height`` (sent again whenever the
        guest's agent comes back)."""
        await self._send(self.session.set_monitors([(width, height)]))


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
