"""The verbs on a VM on another host that run it (start, stop, status, console...): light
to import, with no VM model, so that `vmdesk start HOST:VM` costs what libvirt costs."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vmdesk.core import hosts
from vmdesk.core.errors import Conflict, GuestTimeout, VMDeskError
from vmdesk.core.library import Library
from vmdesk.engines.libvirt.connection import CONNECT_TIMEOUT
from vmdesk.engines.libvirt.host import LibvirtHost


@contextlib.contextmanager
def connected(
    library: Library, name: str, *, timeout: float = CONNECT_TIMEOUT
) -> Iterator[LibvirtHost]:
    host = hosts.get(library.root, name)
    conn = LibvirtHost(host.name, host.uri, timeout=timeout, accel=host.accel)
    try:
        yield conn
    finally:
        with contextlib.suppress(VMDeskError):
            conn.close()


def act(library: Library, host: str, name: str, action: str) -> None:
    with connected(library, host) as conn:
        conn.act(name, action)


def status(library: Library, host: str, name: str) -> dict[str, Any]:
    with connected(library, host) as conn:
        return {"status": conn.state(name), "host": host}


def screenshot(library: Library, host: str, name: str, output: Path) -> Path:
    from vmdesk.display import ppm

    with connected(library, host) as conn:
        mime, data = conn.screenshot(name)
    png = data if mime == "image/png" else ppm.to_png(data)
    tmp = output.with_name(f".{output.name}.part")
    tmp.write_bytes(png)
    tmp.replace(output)
    return output


def stop(library: Library, host: str, name: str, *, force: bool, timeout: float) -> bool:
    """The power button, then pulling the plug after ``timeout``; whether it was forced."""
    with connected(library, host) as conn:
        if conn.state(name) == "stopped":
            raise Conflict(f"{name} is not running on host {host}", hint="nothing to stop")
        if not force:
            conn.act(name, "shutdown")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if conn.state(name) == "stopped":
                    return False
                time.sleep(0.2)
        conn.act(name, "destroy")
        return True


def start_and_wait(
    library: Library, host: str, name: str, pattern: str, timeout: float
) -> tuple[dict[str, Any], str | None]:
    """Start the VM and wait for a console line matching ``pattern``: started paused, its
    console opened, then let run, so not a byte of its boot is missed (a host over SSH
    takes longer to open a console than a small guest takes to boot). The start's report,
    and the line (None when it was already running: its boot is over)."""
    with connected(library, host) as conn:
        if conn.state(name) not in ("stopped", "crashed"):
            return {"already_running": True, "host": host}, None
        conn.act(name, "start-paused")
        sock = conn.console(name)
        conn.act(name, "resume")
        with sock:
            line = _first_match(sock, re.compile(pattern, re.MULTILINE), timeout)
    if line is None:
        raise GuestTimeout(
            f"{name} on host {host} showed nothing matching {pattern!r} within {timeout:.0f} s",
            hint=f"`vmdesk console {host}:{name}` shows what it does",
        )
    return {"host": host, "engine": f"libvirt on host {host}"}, line


def _first_match(sock: socket.socket, regex: re.Pattern[str], timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    seen = b""  # a line may come in pieces; a guest that never matches is cut to its tail
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return None
        if not data:
            return None
        seen = (seen + data)[-(1 << 20) :]
        found = regex.search(seen.decode(errors="replace"))
        if found:
            return found.group(0).strip()
    return None


def console(library: Library, host: str, name: str) -> socket.socket:
    """The VM's serial console, relayed to a local socket (the host's connection with it:
    closing the socket ends both)."""
    known = hosts.get(library.root, host)
    conn = LibvirtHost(known.name, known.uri)
    try:
        return conn.console(name, on_close=conn.close)
    except BaseException:
        with contextlib.suppress(VMDeskError):
            conn.close()
        raise


def display(library: Library, host: str, name: str) -> socket.socket:
    """A stream to the VM's VNC server (for the web display), opened through the host's
    libvirt and SSH: no TCP port is opened on the host."""
    with connected(library, host) as conn:
        return conn.display(name)


def start(library: Library, host: str, name: str) -> dict[str, Any]:
    with connected(library, host) as conn:
        if conn.state(name) not in ("stopped", "crashed"):  # no description read: no model
            return {"already_running": True, "host": host}
        conn.act(name, "start")
    return {"host": host, "engine": f"libvirt on host {host}"}
