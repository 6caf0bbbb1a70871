"""A stream to a unix socket on a host reached over SSH (its VNC server's): an SSH local
forward of that socket, so that no TCP port is opened on the host and the credentials are
the user's SSH agent's or key's, as for libvirt's own connection.

The forward's ssh runs ``sleep`` on the host; ssh ends once that is over and the forwarded
connection has closed, so nothing is left running after the display is closed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from vmdesk.core.errors import HostError

CONNECT_WITHIN = 15  # seconds: the host's `sleep`, in which our one connection is made


def ssh_argv(uri: str, local: str, path: str) -> list[str]:
    """The ssh command forwarding ``local`` here to ``path`` on the host of the qemu+ssh
    ``uri``, with the URI's user, port, key and host-key choice as libvirt reads them."""
    parts = urlsplit(uri)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    argv = [query.get("command") or "ssh", "-T", "-e", "none", "-o", "BatchMode=yes",
            "-o", "ExitOnForwardFailure=yes", "-o", "ControlPath=none"]  # fmt: skip
    if parts.port:
        argv += ["-p", str(parts.port)]
    if parts.username:
        argv += ["-l", parts.username]
    if query.get("keyfile"):
        argv += ["-i", query["keyfile"]]
    if query.get("no_verify") == "1":
        argv += ["-o", "StrictHostKeyChecking=no"]
    host = parts.hostname or "localhost"
    return [*argv, "-L", f"{local}:{path}", "--", host, "sleep", str(CONNECT_WITHIN)]


def open_stream(uri: str, path: str, where: str) -> socket.socket:
    """A connected stream to ``path`` on the host; closing it ends the ssh process."""
    folder = Path(tempfile.mkdtemp(prefix="vmdesk-tunnel-"))
    local = folder / "s"
    process = subprocess.Popen(ssh_argv(uri, str(local), path), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + CONNECT_WITHIN
        while not local.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                why = (process.communicate()[1] or b"").decode(errors="replace").strip()
                raise HostError(f"no SSH forward to {where}'s display: {why or 'timed out'}",
                                hint="check that `ssh` to the host works by hand")  # fmt: skip
            time.sleep(0.02)
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(local))
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the connection outlives its name
    threading.Thread(target=process.communicate, daemon=True).start()  # reaped when done
    return sock
