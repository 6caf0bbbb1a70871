"""Listening unix sockets we bind ourselves and hand to QEMU as inherited fds."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path


def listen(path: Path) -> socket.socket:
    """Bind and listen on ``path`` (a stale socket file from a crash is replaced)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(4)
    return sock
