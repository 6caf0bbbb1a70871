"""Spawning QEMU from a finished launch spec, with the standard library only.

The supervisor replays a cached spec through this module before it has imported the config
model (see vmdesk.supervisor.launch_plan), so nothing here may import pydantic or asyncio.
A spec is plain JSON data:

    {"engine": "qemu", "argv": [...], "listen": {"3": qmp.sock, "4": serial.sock},
     "rotate": [serial.log], "remove": [vnc.sock], "log": engine.log,
     "watch": [files whose change makes the spec stale], "accel_reason": "..."}
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from vmdesk.engines.qemu import unix_socket

# QEMU always finds its inherited listening sockets at these fds, so an argv does not
# depend on the supervisor's own fd numbers and can be cached.
QMP_FD = 3
SERIAL_FD = 4
_PR_SET_PDEATHSIG = 1


def _child_setup(moves: list[tuple[int, int]], prctl: Any) -> None:
    """Runs in the QEMU child before exec: put the sockets at their fixed fds, and make the
    kernel kill QEMU if the supervisor dies, so a VM never outlives its manager (Linux)."""
    # Via high fds first, so a socket that already sits on another's target survives.
    parked = [(fcntl.fcntl(src, fcntl.F_DUPFD_CLOEXEC, 64), dst) for src, dst in moves]
    for src, dst in parked:
        os.dup2(src, dst)  # dup2 clears close-on-exec
    # Whatever else is inheritable came from whoever started us: QEMU must not keep it.
    keep = {0, 1, 2, *(dst for _, dst in moves)}
    for name in os.listdir("/dev/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):  # e.g. the fd that listed /dev/fd
                if os.get_inheritable(fd):
                    os.close(fd)
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(spec: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Start QEMU as ``spec`` says: move the previous serial log aside, bind the sockets it
    inherits, append the command line to the engine log, and spawn."""
    for path in spec["rotate"]:  # keep the previous run's log as NAME.1
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, path + ".1")
    for path in spec["remove"]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
    listening = {int(fd): unix_socket.listen(Path(path)) for fd, path in spec["listen"].items()}
    moves = [(sock.fileno(), fd) for fd, sock in listening.items()]
    try:
        with open(spec["log"], "ab") as log:
            log.write(("+ " + shlex.join(spec["argv"]) + "\n").encode())
            log.flush()
            return subprocess.Popen(
                spec["argv"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Not close_fds: it would close the fixed fds set up in the child, which
                # closes everything else itself.
                close_fds=False,
                preexec_fn=lambda: _child_setup(moves, prctl),  # no threads exist yet
            )
    finally:
        for sock in listening.values():
            sock.close()  # QEMU has its own copies
