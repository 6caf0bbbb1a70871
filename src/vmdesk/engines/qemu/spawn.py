"""Spawning QEMU from a finished launch spec, with the standard library only.

The supervisor replays a cached spec through this module before it has imported the config
model (see vmdesk.supervisor.launch_plan), so nothing here may import pydantic or asyncio.
A spec is plain JSON data:

    {"engine": "qemu", "argv": [...], "listen": {"3": qmp.sock, "4": serial.sock},
     "rotate": [serial.log], "remove": [vnc.sock], "log": engine.log,
     "helpers": [{"argv": [...], "log": swtpm.log, "engine_fd": 5, "socket": "pair"}],
     "taps": [{"bridge": "br0", "engine_fd": 20}],
     "watch": [files whose change makes the spec stale], "accel_reason": "...",
     "own_session": false}

Each helper daemon gets its socket at fd 3 and QEMU the other side at the helper's
``engine_fd``: one end of a socket pair (swtpm, passt: connected before either starts, so
neither waits for the other, and each sees the other go), or, for a daemon that insists on
accepting its client (virtiofsd), a listening socket with no name in the file system that
QEMU is already connected to. Helpers start first and are killed if QEMU cannot start.
Each tap is a new tap device on the named bridge (which needs CAP_NET_ADMIN), handed to
QEMU at ``engine_fd``; it disappears when QEMU closes it. With ``own_session`` QEMU gets a
session of its own, so a Ctrl-C in the terminal reaches only whoever started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

from vmdesk.engines.qemu import unix_socket

TYPE_CHECKING = False  # not typing's: `typing` stays off the VM start path
if TYPE_CHECKING:
    from typing import Any

# QEMU always finds its inherited listening sockets at these fds, so an argv does not
# depend on the supervisor's own fd numbers and can be cached.
QMP_FD = 3
SERIAL_FD = 4
TPM_FD = 5
SHARE_FD = 6  # the first virtiofs share's vhost-user socket; share N is at SHARE_FD + N
GUEST_AGENT_FD = 30  # qemu-ga's virtio-serial port
SPICE_AGENT_FD = 31  # spice-vdagent's virtio-serial port
TAP_FD = 40  # the first bridged NIC's tap; NIC N is at TAP_FD + N
NAT_FD = 60  # QEMU's end of the first NIC's socket pair to its passt; NIC N at NAT_FD + N
HELPER_FD = 3  # where a helper finds its end of the socket pair
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


class Spawned:
    """QEMU and the helper daemons started for it (helpers die with the supervisor).
    A plain class: dataclasses would add their import to every VM's start."""

    __slots__ = ("helpers", "qemu")

    def __init__(
        self, qemu: subprocess.Popen[bytes], helpers: list[subprocess.Popen[bytes]]
    ) -> None:
        self.qemu = qemu
        self.helpers = helpers

    @property
    def pid(self) -> int:
        return self.qemu.pid

    def discard(self) -> None:
        """Kill QEMU, then its helpers."""
        for process in (self.qemu, *reversed(self.helpers)):
            if process.poll() is None:
                process.kill()
            process.wait()


def spawn(spec: dict[str, Any]) -> Spawned:
    """Start QEMU as ``spec`` says: move the previous serial log aside, start its helpers,
    bind the sockets it inherits, append the command line to the engine log, and spawn."""
    for path in spec["rotate"]:  # keep the previous run's log as NAME.1
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, path + ".1")
    for path in spec["remove"]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
    helpers: list[subprocess.Popen[bytes]] = []
    try:
        with contextlib.ExitStack() as ours:  # our copies of the sockets, closed after
            moves: list[tuple[int, int]] = []
            for helper in spec.get("helpers", []):
                engine_end, helper_end = _helper_sockets(helper.get("socket", "pair"))
                ours.enter_context(engine_end)
                ours.enter_context(helper_end)
                moves_helper = [(helper_end.fileno(), HELPER_FD)]
                helpers.append(_start(helper["argv"], helper["log"], moves_helper, prctl))
                moves.append((engine_end.fileno(), int(helper["engine_fd"])))
            for tap in spec.get("taps", []):
                from vmdesk.networking.taps import open_tap  # only VMs with taps pay for it

                fd = open_tap(tap["bridge"])
                ours.callback(os.close, fd)
                moves.append((fd, int(tap["engine_fd"])))
            for fd, path in spec["listen"].items():
                sock = ours.enter_context(unix_socket.listen(Path(path)))
                moves.append((sock.fileno(), int(fd)))
            own_session = bool(spec.get("own_session"))
            qemu = _start(spec["argv"], spec["log"], moves, prctl, own_session)
            return Spawned(qemu, helpers)
    except BaseException:
        for process in reversed(helpers):  # torn down in reverse
            process.kill()
            process.wait()
        raise


def _helper_sockets(kind: str) -> tuple[socket.socket, socket.socket]:
    """(QEMU's end, the helper's end) of a helper's channel."""
    if kind == "pair":
        return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Linux autobind: an abstract name, nothing in the file system to clean up. QEMU's
        # connection is queued before the helper even starts, so it is the one accepted
        # (virtiofsd closes its listener after that first client).
        listener.bind("")
        listener.listen(1)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(listener.getsockname())
    except BaseException:
        listener.close()
        raise
    return client, listener


def _start(
    argv: list[str],
    log_path: str,
    moves: list[tuple[int, int]],
    prctl: Any,
    own_session: bool = False,
) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        log.write(("+ " + shlex.join(argv) + "\n").encode())
        log.flush()
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Not close_fds: it would close the fixed fds set up in the child, which
            # closes everything else itself.
            close_fds=False,
            # Safe after fork: it takes no lock another thread could hold (and the
            # supervisor has no other threads yet).
            preexec_fn=lambda: _child_setup(moves, prctl),
            start_new_session=own_session,
        )
