"""A unix socket that relays to an agent's channel held by the engine's own process.

The supervisor speaks to a guest agent on a socket path (vmdesk.core.layout.Sockets). QEMU
listens there itself; an engine that runs the VM in the supervisor's process (vz) holds the
channel as one end of a socket pair instead, and serves this relay on the path: one client
at a time, its bytes to the channel and the channel's bytes back. The channel outlives the
clients, as QEMU's chardev does.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

_CHUNK = 1 << 16


class Relay:
    def __init__(self, path: Path, channel: socket.socket) -> None:
        self.path = path
        self._channel = channel
        self._server: asyncio.Server | None = None
        self._busy = asyncio.Lock()  # one client at a time, as a chardev takes one
        self._from_channel: asyncio.StreamReader | None = None
        self._to_channel: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        self._channel.setblocking(False)
        self._from_channel, self._to_channel = await asyncio.open_connection(sock=self._channel)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._client, str(self.path))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._to_channel is not None:
            self._to_channel.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._from_channel is not None and self._to_channel is not None
        async with self._busy:
            inward = asyncio.create_task(_pump(reader, self._to_channel))
            outward = asyncio.create_task(_pump(self._from_channel, writer))
            # The client leaving ends its turn; what the guest sends meanwhile waits for the
            # next client, unread, in the channel.
            await asyncio.wait({inward}, return_when=asyncio.FIRST_COMPLETED)
            outward.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await outward
            writer.close()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(_CHUNK):
            sink.write(data)
            await sink.drain()
