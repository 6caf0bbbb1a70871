"""The SPICE channel's connection to the engine, against a listening socket that behaves
like QEMU's: one client at a time, reading only what the test lets the guest read."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vmdesk.integration import spice_channel
from vmdesk.integration import spice_wire as wire
from vmdesk.integration.spice_channel import SpiceChannel

pytestmark = pytest.mark.timeout(30)


@contextlib.asynccontextmanager
async def engine(path: Path) -> AsyncIterator[socket.socket]:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)
    listener.setblocking(False)
    try:
        yield listener
    finally:
        listener.close()


async def accept(listener: socket.socket, timeout: float) -> socket.socket | None:
    try:
        client, _ = await asyncio.wait_for(
            asyncio.get_running_loop().sock_accept(listener), timeout
        )
    except TimeoutError:
        return None
    return client


async def read_all(client: socket.socket) -> bytes:
    """What the host wrote on this connection, until it closed it."""
    loop, data = asyncio.get_running_loop(), bytearray()
    while chunk := await asyncio.wait_for(loop.sock_recv(client, 1 << 16), 5):
        data += chunk
    return bytes(data)


def first_message(data: bytes) -> wire.AgentMessage:
    return wire.Decoder().feed(data)[0]


def test_a_port_that_stays_closed_gets_a_new_connection_and_the_unread_bytes_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A guest that rebooted must read the host's greeting from its first byte, not the
    rest of what the host wrote to the agent before."""
    monkeypatch.setattr(spice_channel, "RECONNECT_AFTER", 0.05)
    path = tmp_path / "spice.sock"

    async def test() -> tuple[bytes, bytes, int]:
        async with engine(path) as listener:
            channel = SpiceChannel(path)
            await channel.open()
            old = await accept(listener, 5)
            assert old is not None
            await channel.resize(1024, 768)  # kept for the guest: nothing goes out yet
            await channel.port_changed(False)  # the guest reboots; the hello sits unread
            new = await accept(listener, 5)
            assert new is not None, "the channel did not connect again"
            new.setblocking(False)
            await channel.port_changed(True)  # the guest's new agent opens the port
            greeting = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(new, 4096), 5)
            stale = await read_all(old)  # the old connection ended, with what it held
            await channel.close()
            new.close()
            old.close()
            return stale, greeting, channel.restarts

    stale, greeting, restarts = asyncio.run(test())
    assert first_message(stale).type == wire.MessageType.ANNOUNCE_CAPABILITIES
    hello = first_message(greeting)
    assert hello.type == wire.MessageType.ANNOUNCE_CAPABILITIES
    assert wire.parse_capabilities(hello.data).request
    assert restarts == 1


def test_a_port_that_reopens_at_once_keeps_its_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spice-vdagentd reopens the port right after any error: the host must not vanish
    under it then (it would read the end of the stream and reopen again)."""
    monkeypatch.setattr(spice_channel, "RECONNECT_AFTER", 0.3)
    path = tmp_path / "spice.sock"

    async def test() -> tuple[socket.socket | None, bool]:
        async with engine(path) as listener:
            channel = SpiceChannel(path)
            await channel.open()
            first = await accept(listener, 5)
            assert first is not None
            await channel.port_changed(False)
            await channel.port_changed(True)
            second = await accept(listener, 0.6)
            first.setblocking(False)
            await asyncio.sleep(0.05)
            alive = True
            with contextlib.suppress(BlockingIOError):
                alive = first.recv(1 << 16) != b""  # both hellos, and no end of stream
            await channel.close()
            first.close()
            return second, alive

    second, alive = asyncio.run(test())
    assert second is None and alive


def test_closing_the_channel_while_it_waits_to_reconnect_leaves_no_task(tmp_path: Path) -> None:
    path = tmp_path / "spice.sock"

    async def test() -> int:
        async with engine(path) as listener:
            channel = SpiceChannel(path)
            await channel.open()
            await channel.port_changed(False)
            await channel.close()
            await asyncio.sleep(0)
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            client = await accept(listener, 1)
            assert client is not None
            client.close()
            return len(pending)

    assert asyncio.run(test()) == 0


def test_a_connection_the_engine_resets_is_made_again_and_the_agent_greeted_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen in a run: the engine reset the supervisor's connection while the VM ran, and the
    clipboard stayed dead for good. The channel connects again and says hello."""
    monkeypatch.setattr(spice_channel, "RECONNECT_AFTER", 0.05)
    path = tmp_path / "spice.sock"

    async def test() -> wire.AgentMessage:
        async with engine(path) as listener:
            channel = SpiceChannel(path)
            await channel.open()
            first = await accept(listener, 5)
            assert first is not None
            # a reset, not a close: linger 0 drops the connection at once
            first.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            first.close()
            second = await accept(listener, 5)
            assert second is not None, "the channel did not connect again"
            second.setblocking(False)
            greeting = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(second, 4096), 5)
            await channel.close()
            second.close()
            return first_message(greeting)

    hello = asyncio.run(test())
    assert hello.type == wire.MessageType.ANNOUNCE_CAPABILITIES


def test_a_channel_closed_on_purpose_does_not_connect_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spice_channel, "RECONNECT_AFTER", 0.05)
    path = tmp_path / "spice.sock"

    async def test() -> socket.socket | None:
        async with engine(path) as listener:
            channel = SpiceChannel(path)
            await channel.open()
            first = await accept(listener, 5)
            await channel.close()
            assert first is not None
            first.close()
            return await accept(listener, 0.5)

    assert asyncio.run(test()) is None
