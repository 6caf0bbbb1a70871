"""Attaching a terminal to a VM's serial console through its supervisor's console socket."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import termios
import tty
from pathlib import Path


def attach(where: Path | socket.socket, name: str, detach_key: bytes) -> None:
    """Copy between this terminal (in raw mode) and the console until ``detach_key``;
    ``where`` is the console's socket file, or a socket already connected to it."""
    if isinstance(where, socket.socket):
        conn = where
    else:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(str(where))
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    os.write(stdout, f"[attached to {name}'s console; Ctrl-] detaches]\r\n".encode())
    try:
        if saved is not None:
            tty.setraw(stdin)
        while True:
            ready, _, _ = select.select([stdin, conn], [], [])
            if conn in ready:
                data = conn.recv(65536)
                if not data:
                    os.write(stdout, b"\r\n[the VM stopped]\r\n")
                    return
                os.write(stdout, data)
            if stdin in ready:
                data = os.read(stdin, 4096)
                if not data:
                    return
                if detach_key in data:
                    before = data.split(detach_key, 1)[0]
                    if before:
                        conn.sendall(before)
                    return
                conn.sendall(data)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        with contextlib.suppress(OSError):
            conn.close()
        os.write(stdout, b"\r\n[detached]\r\n")
