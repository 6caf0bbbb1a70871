"""Talking to a VM's supervisor, and deriving the VM's status (standard library only).

Status is never stored: it comes from the bundle's owner lock, a live question to the
supervisor, and the record the supervisor leaves when the VM stops. Stale files left by a
supervisor that died are detected and cleaned here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path

from vmdesk.core import processes
from vmdesk.core.layout import Layout, Sockets
from vmdesk.core.listing import is_locked

TYPE_CHECKING = False  # not typing's: `typing` stays off the VM start path
if TYPE_CHECKING:
    from typing import Any


class ControlError(Exception):
    """The supervisor could not be reached, or closed the connection without an answer."""


def request(sock: Path, op: str, *, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
    """One request/reply on the supervisor's control socket (see protocol.py); the reply
    as it came, ``ok`` false for an error (protocol.error_from rebuilds it)."""
    from vmdesk.supervisor import protocol  # only once a VM runs: not on every `list`

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(sock))
            conn.sendall(protocol.encode_request(op, args))
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise ControlError(f"the VM's supervisor did not answer ({exc})") from exc
    try:
        reply: dict[str, Any] = json.loads(data)
    except ValueError as exc:
        raise ControlError("the VM's supervisor closed the connection") from exc
    if not isinstance(reply, dict):
        raise ControlError("the VM's supervisor did not answer with a JSON object")
    return reply


def vm_uuid(files: Layout) -> str:
    try:
        return str(json.loads(files.config.read_text())["uuid"])
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown"


def sockets_for(bundle_dir: Path) -> Sockets:
    files = Layout(bundle_dir)
    return Sockets(files.sockets(vm_uuid(files)))


def remove_run_files(files: Layout, sockets: Sockets | None) -> None:
    """Pid files and sockets of a run; a short socket dir outside the bundle goes too."""
    paths = [files.supervisor_pid, files.engine_pid, *(sockets.all() if sockets else ())]
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    if sockets is not None and sockets.dir != files.run:
        with contextlib.suppress(OSError):
            sockets.dir.rmdir()


def clean_stale(bundle_dir: Path) -> str | None:
    """Remove what a dead supervisor left behind; returns why, when it died unexpectedly."""
    files = Layout(bundle_dir)
    reason = None
    if files.supervisor_pid.exists():
        reason = "the VM's supervisor stopped unexpectedly; the VM was stopped with it"
        engine = processes.alive_as_recorded(files.engine_pid)
        if engine is not None:  # only when the engine did not die with its supervisor
            with contextlib.suppress(OSError):
                os.kill(engine, signal.SIGKILL)
    remove_run_files(files, sockets_for(bundle_dir))
    if reason is not None:
        record_exit(bundle_dir, "crashed", reason)
    return reason


def record_exit(bundle_dir: Path, status: str, reason: str, hint: str = "") -> None:
    files = Layout(bundle_dir)
    record = {"status": status, "reason": reason, "hint": hint, "time": time.time()}
    tmp = files.last_exit.with_suffix(".tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(record) + "\n")
        tmp.replace(files.last_exit)


def last_exit(bundle_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(Layout(bundle_dir).last_exit.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _ended_status(record: dict[str, Any], *, default: str) -> dict[str, Any]:
    """What the exit record says, or ``default`` when there is none."""
    if record.get("status") == "crashed":
        return {"status": "crashed", "reason": record.get("reason", "")}
    if record.get("status") == "failed":  # it never ran: nothing crashed
        return {"status": "stopped", "reason": f"the last start failed: {record.get('reason')}"}
    if record.get("status") == "stopped":
        return {"status": "stopped"}
    return {"status": default}


def derive(bundle_dir: Path, *, timeout: float = 1.0) -> dict[str, Any]:
    """``{"status": ..., "reason": ...}`` for the VM in ``bundle_dir``."""
    files = Layout(bundle_dir)
    if not is_locked(files.lock):
        # Only a supervisor that died leaves a pid file; without one there is nothing to
        # clean (a start cleans up anyway), and listing stays free of needless unlinks.
        if files.supervisor_pid.exists() or files.engine_pid.exists():
            clean_stale(bundle_dir)
        if files.suspended_state.exists():
            return {"status": "suspended"}
        return _ended_status(last_exit(bundle_dir), default="stopped")
    try:
        reply = request(sockets_for(bundle_dir).control, "status", timeout=timeout)
    except ControlError:
        reply = {}
    if not reply.get("ok"):
        # The supervisor holds the lock but does not answer: it is either still starting,
        # or the VM has just ended and it is cleaning up (then the exit is on record).
        return _ended_status(last_exit(bundle_dir), default="starting")
    return {k: v for k, v in reply.items() if k != "ok"}
