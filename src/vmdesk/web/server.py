"""Serving the web app with uvicorn on a socket we bind ourselves (so port 0 works and the
URL with the real port is known before the first request)."""

from __future__ import annotations

import socket
from pathlib import Path

import uvicorn

from vmdesk.core.errors import Conflict, VMDeskError
from vmdesk.web.app import create_app

LOOPBACK = "127.0.0.1"


def bind(address: str, port: int) -> socket.socket:
    """A listening TCP socket on ``address:port`` (port 0: any free one)."""
    family = socket.AF_INET6 if ":" in address.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == 98:  # EADDRINUSE
            raise Conflict(
                f"port {port} on {address} is already in use",
                hint="choose another with --port N, or --port 0 for any free one",
            ) from None
        raise VMDeskError(f"cannot listen on {address}:{port}: {exc.strerror}") from None
    sock.listen(128)
    return sock


def url(sock: socket.socket, token: str | None = None) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = LOOPBACK
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def server(
    sock: socket.socket, token: str, library_root: Path | None = None, listen: str | None = None
) -> uvicorn.Server:
    """A uvicorn server for the app; ``run(sockets=[sock])`` it (or ``serve`` in a loop)."""
    app = create_app(token, library_root, listen=[listen] if listen else [])
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=3,  # open event streams and consoles do not hold Ctrl-C
    )
    return uvicorn.Server(config)
