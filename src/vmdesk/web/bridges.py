"""Websockets bridged to a running VM's VNC server (for noVNC) and its serial console (for
xterm.js; a local VM's supervisor fans the console out to every client), on this desk or
on a libvirt host. No VNC TCP port is ever opened."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Literal

from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from vmdesk.core.errors import NotFound, VMDeskError
from vmdesk.service import lifecycle
from vmdesk.web.context import Context

router = APIRouter()

CLOSE_NOT_FOUND = 4404  # application close codes: 4000 + the HTTP status it would be
CLOSE_NOT_RUNNING = 4409


def _stream(
    ctx: Context, name: str, which: Literal["console", "vnc"]
) -> tuple[socket.socket | None, int, str]:
    """A stream to the VM's console or VNC server (on this desk or a host), or why there
    is none (a close code and reason)."""
    try:
        return lifecycle.stream(ctx.library, name, which), 0, ""
    except NotFound as exc:
        return None, CLOSE_NOT_FOUND, exc.message
    except VMDeskError as exc:
        return None, CLOSE_NOT_RUNNING, exc.message


async def _bridge(websocket: WebSocket, name: str, which: Literal["console", "vnc"]) -> None:
    ctx: Context = websocket.app.state.vmdesk
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol="binary" if "binary" in offered else None)
    sock, code, reason = await run_in_threadpool(_stream, ctx, name, which)
    if sock is None:
        await websocket.close(code, reason[:120])
        return
    try:
        reader, writer = await asyncio.open_unix_connection(sock=sock)
    except OSError as exc:
        sock.close()
        await websocket.close(CLOSE_NOT_RUNNING, f"cannot reach the VM: {exc.strerror}"[:120])
        return

    async def to_vm() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                data = (message.get("text") or "").encode()
            writer.write(data)
            await writer.drain()

    async def to_client() -> None:
        while chunk := await reader.read(65536):
            await websocket.send_bytes(chunk)

    tasks = [asyncio.create_task(to_vm()), asyncio.create_task(to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, OSError,
                                     RuntimeError, ConnectionError):  # fmt: skip
                await task
        writer.close()
        with contextlib.suppress(Exception):
            await websocket.close(1000, "the VM's end closed")


@router.websocket("/ws/vms/{name}/vnc")
async def vnc(websocket: WebSocket, name: str) -> None:
    await _bridge(websocket, name, "vnc")


@router.websocket("/ws/vms/{name}/serial")
async def serial(websocket: WebSocket, name: str) -> None:
    await _bridge(websocket, name, "console")
