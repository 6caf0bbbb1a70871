"""The relay an in-process engine (vz) serves on the guest agent's socket: bytes both ways
between one client at a time and the channel, which outlives its clients."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from vmdesk.integration.relay import Relay


def test_bytes_go_both_ways_and_the_channel_outlives_a_client(tmp_path: Path) -> None:
    ours, guest = socket.socketpair()
    guest.setblocking(False)

    async def test() -> list[bytes]:
        loop = asyncio.get_running_loop()
        relay = Relay(tmp_path / "run" / "guest-agent.sock", ours)
        await relay.start()
        got: list[bytes] = []
        try:
            for turn in (b"first", b"second"):
                reader, writer = await asyncio.open_unix_connection(str(relay.path))
                writer.write(b'{"execute": "guest-ping"} ' + turn)
                await writer.drain()
                got.append(await loop.sock_recv(guest, 4096))  # the guest reads it
                await loop.sock_sendall(guest, b'{"return": {}} ' + turn)
                got.append(await reader.read(4096))  # and the client its answer
                writer.close()
                await writer.wait_closed()
                await asyncio.sleep(0.05)  # the relay notices the client left
        finally:
            await relay.close()
        assert not relay.path.exists()
        return got

    assert asyncio.run(test()) == [
        b'{"execute": "guest-ping"} first', b'{"return": {}} first',
        b'{"execute": "guest-ping"} second', b'{"return": {}} second',
    ]  # fmt: skip
    guest.close()
