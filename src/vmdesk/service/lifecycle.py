"""Running VMs: start, stop, kill, pause, resume, reboot, suspend, screenshot, logs."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from socket import AF_UNIX
from socket import socket as Stream
from typing import Any, Literal

from vmdesk.core import hosts, processes
from vmdesk.core.errors import VMDeskError
from vmdesk.core.library import Library
from vmdesk.core.states import ENDED
from vmdesk.service.library import find
from vmdesk.supervisor import client
from vmdesk.supervisor import status as vmstatus

LogKind = Literal["serial", "engine", "events"]
SIMPLE_ACTIONS = ("pause", "resume", "reboot")

# Supervisors started by this (long-lived) process: reaped once they exit, so a server
# that starts many VMs does not collect zombies. Only these pids are waited for, never
# -1, so subprocess.run elsewhere keeps its children's exit codes.
_started: set[int] = set()
_started_lock = threading.Lock()


def reap() -> None:
    """Collect the supervisors this process started that have exited since."""
    with _started_lock:
        for pid in list(_started):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                _started.discard(pid)


def on_host(ref: str) -> tuple[str, str] | None:
    """(host, VM) for a reference to a VM on another host (``lab:dev``), else None."""
    host, name = hosts.split(ref)
    return (host, name) if host is not None else None


def start(library: Library, ref: str, *, fork: bool = False) -> dict[str, Any]:
    """Start the VM (or resume it from its saved state); returns once it runs.

    ``fork`` boots sooner but is only for single-threaded callers (see client.start)."""
    if remote_vm := on_host(ref):
        from vmdesk.service import remote_run as remote  # libvirt: only for VMs on hosts

        return remote.start(library, *remote_vm)
    bundle = find(library, ref)
    report = client.start(bundle, fork=fork)
    with contextlib.suppress(OSError, ValueError):
        pid = processes.pid_in(bundle.files.supervisor_pid)
        with _started_lock:
            _started.add(pid)
    return report


def stop(
    library: Library, ref: str, *, force: bool = False, timeout: float = 30.0
) -> dict[str, Any]:
    """The power button, forced after ``timeout``; a suspended VM's saved state is
    discarded instead (``{"discarded": True}``)."""
    if remote_vm := on_host(ref):
        from vmdesk.service import remote_run as remote  # libvirt: only for VMs on hosts

        return {"forced": remote.stop(library, *remote_vm, force=force, timeout=timeout)}
    bundle = find(library, ref)
    if not bundle.is_locked() and client.discard_suspended(bundle):
        return {"discarded": True}
    reply = client.stop(bundle, force=force, timeout=timeout)
    reap()
    return {"forced": bool(reply.get("forced"))}


def kill(library: Library, ref: str) -> None:
    if remote_vm := on_host(ref):
        from vmdesk.service import remote_run as remote  # libvirt: only for VMs on hosts

        remote.act(library, *remote_vm, "destroy")
        return
    client.kill(find(library, ref))
    reap()


def suspend(library: Library, ref: str) -> dict[str, Any]:
    reply = client.suspend(find(library, ref))
    reap()
    return {"seconds": float(reply.get("seconds") or 0)}


def simple(library: Library, ref: str, action: str) -> dict[str, Any]:
    """pause, resume or reboot; returns the supervisor's status after it."""
    if action not in SIMPLE_ACTIONS:
        raise VMDeskError(f"unknown action {action!r}", hint="use " + ", ".join(SIMPLE_ACTIONS))
    if remote_vm := on_host(ref):
        from vmdesk.service import remote_run as remote  # libvirt: only for VMs on hosts

        remote.act(library, *remote_vm, {"pause": "suspend"}.get(action, action))
        return remote.status(library, *remote_vm)
    reply = client.call(find(library, ref), action)
    return {k: v for k, v in reply.items() if k != "ok"}


def status(library: Library, ref: str) -> dict[str, Any]:
    """The VM's status, derived live (lock, supervisor, last exit), never stored."""
    if remote_vm := on_host(ref):
        from vmdesk.service import remote_run as remote  # libvirt: only for VMs on hosts

        return remote.status(library, *remote_vm)
    return vmstatus.derive(find(library, ref).path)


def socket(library: Library, ref: str, which: Literal["console", "vnc"] = "console") -> Path:
    """The running VM's serial console or VNC socket (any number of clients may attach);
    NotRunning when it does not run or has no such socket (its display is off)."""
    bundle = find(library, ref)
    name = bundle.dir_name.removesuffix(".vmdesk")
    if vmstatus.derive(bundle.path)["status"] in (*ENDED, "suspended"):
        raise client.NotRunning(
            f"VM {name!r} is not running", hint=f"`vmdesk start {name}`, or --log"
        )
    sockets = vmstatus.sockets_for(bundle.path)
    path = sockets.vnc if which == "vnc" else sockets.console
    if not path.exists():
        raise client.NotRunning(
            f"VM {name!r} has no {which} socket (display off?)",
            hint=f"`vmdesk edit {name} --vnc` while it is stopped",
        )
    return path


def stream(library: Library, ref: str, which: Literal["console", "vnc"] = "console") -> Stream:
    """A connected stream to the running VM's serial console or VNC server, on this desk
    (its unix socket) or on a host (through libvirt); closing it lets go of the VM."""
    remote_vm = on_host(ref)
    if remote_vm is not None:
        from vmdesk.service import remote_run

        if which == "console":
            return remote_run.console(library, *remote_vm)
        return remote_run.display(library, *remote_vm)
    path = socket(library, ref, which)
    sock = Stream(AF_UNIX)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        raise client.NotRunning(
            f"cannot reach the VM: {exc.strerror}", hint="it may have just stopped; start it again"
        ) from None
    return sock


def serial_log(library: Library, ref: str) -> tuple[Path, Callable[[], bool]]:
    """The VM's serial log, and a function telling whether more may still come."""
    bundle = find(library, ref)
    return bundle.files.serial_log, lambda: vmstatus.derive(bundle.path)["status"] not in ENDED


def screenshot(library: Library, ref: str, output: Path) -> Path:
    """Save a PNG of the running VM's screen to ``output``."""
    if remote_vm := on_host(ref):
        from vmdesk.service import remote_run as remote  # libvirt: only for VMs on hosts

        return remote.screenshot(library, *remote_vm, output)
    return client.screenshot(find(library, ref), output)


def screenshot_png(library: Library, ref: str) -> bytes:
    """The running VM's screen as PNG bytes (of a VM on this desk or on a host)."""
    with tempfile.TemporaryDirectory(prefix="vmdesk-screen-") as tmp:
        return screenshot(library, ref, Path(tmp) / "screen.png").read_bytes()


def log_text(library: Library, ref: str, kind: LogKind, tail: int | None = None) -> str:
    """The VM's serial, engine or events log (its last ``tail`` lines), "" if none yet."""
    bundle = find(library, ref)
    path = {
        "serial": bundle.files.serial_log,
        "engine": bundle.files.engine_log,
        "events": bundle.files.events,
    }[kind]
    try:
        data = _tail_bytes(path, tail)
    except FileNotFoundError:
        return ""
    return data.decode("utf-8", errors="replace")


def _tail_bytes(path: Path, lines: int | None, chunk: int = 65536) -> bytes:
    """The last ``lines`` lines of ``path`` without reading all of a long log."""
    with path.open("rb") as handle:
        if lines is None:
            return handle.read()
        if lines <= 0:
            return b""
        end = handle.seek(0, os.SEEK_END)
        data = b""
        position = end
        while position > 0 and data.count(b"\n") <= lines:
            step = min(chunk, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
        kept = data.splitlines(keepends=True)[-lines:]
        return b"".join(kept)
