"""Starting a VM's supervisor and asking it to do things (what the CLI and web UI call)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vmdesk.core.bundle import Bundle
from vmdesk.core.errors import Conflict, EngineError, GuestTimeout, VMDeskError
from vmdesk.core.states import ENDED
from vmdesk.supervisor import status as vmstatus

START_TIMEOUT = 60.0  # includes a KVM probe on the first start after a host boot


class NotRunning(Conflict):
    """The VM is not running, so it cannot do that."""


def _name(bundle: Bundle) -> str:
    return bundle.dir_name.removesuffix(".vmdesk")


def start(bundle: Bundle, *, timeout: float = START_TIMEOUT) -> dict[str, Any]:
    """Start the VM's supervisor (detached) and return once the VM runs.

    Returns the supervisor's report; ``already_running`` is set when another start won.
    """
    read_fd, write_fd = os.pipe()
    with bundle.files.supervisor_log.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vmdesk.supervisor", str(bundle.path), "--ready-fd",
             str(write_fd)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(write_fd,),
            start_new_session=True,  # outlives this CLI and its terminal
        )  # fmt: skip
    os.close(write_fd)
    try:
        data = b""
        deadline = time.monotonic() + timeout
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                raise GuestTimeout(
                    f"the VM did not start within {timeout:g} s",
                    hint=f"see {bundle.files.supervisor_log} and {bundle.files.engine_log}",
                )
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_fd)
    if not data:
        proc.wait(timeout=10)
        record = vmstatus.last_exit(bundle.path)
        raise EngineError(
            record.get("reason") or "the VM's supervisor exited before the VM started",
            hint=record.get("hint") or f"see {bundle.files.supervisor_log}",
        )
    report: dict[str, Any] = json.loads(data)
    if report.get("already_running"):
        proc.wait(timeout=10)
        return report
    if not report.get("ok"):
        proc.wait(timeout=10)
        raise EngineError(str(report.get("error")), hint=report.get("hint"))
    return report


def call(bundle: Bundle, op: str, *, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
    """Send a request to the running VM's supervisor; NotRunning if it is not running."""
    current = vmstatus.derive(bundle.path)
    if current["status"] in ENDED:
        raise NotRunning(
            f"VM {_name(bundle)!r} is not running", hint=f"`vmdesk start {_name(bundle)}`"
        )
    try:
        reply = vmstatus.request(
            vmstatus.sockets_for(bundle.path).control, op, timeout=timeout, **args
        )
    except vmstatus.ControlError as exc:
        raise EngineError(str(exc), hint=f"see {bundle.files.supervisor_log}") from exc
    if not reply.get("ok"):
        if reply.get("timeout"):
            raise GuestTimeout(f"{op} timed out", hint=f"see {bundle.files.serial_log}")
        raise EngineError(str(reply.get("error")), hint=reply.get("hint"))
    return reply


def wait_stopped(bundle: Bundle, timeout: float) -> None:
    """Wait until the supervisor has let go of the bundle."""
    deadline = time.monotonic() + timeout
    while bundle.is_locked():
        if time.monotonic() > deadline:
            raise GuestTimeout(f"VM {_name(bundle)!r} did not stop within {timeout:g} s")
        time.sleep(0.02)


def _ended(bundle: Bundle) -> bool:
    """After a stop/kill request whose answer was lost: did the VM end anyway?"""
    try:
        wait_stopped(bundle, 15)
    except GuestTimeout:
        return False
    return vmstatus.derive(bundle.path)["status"] in ENDED


def _end(bundle: Bundle, op: str, lost_reply: dict[str, Any], **args: Any) -> dict[str, Any]:
    """A request that ends the VM; returns once the supervisor has let go of the bundle."""
    try:
        reply = call(bundle, op, **args)
    except EngineError:
        if not _ended(bundle):
            raise
        return lost_reply
    wait_stopped(bundle, 15)
    return reply


def stop(bundle: Bundle, *, force: bool = False, timeout: float = 30.0) -> dict[str, Any]:
    return _end(
        bundle, "stop", {"forced": force},
        force=force, timeout=timeout + 15, stop_timeout=timeout,
    )  # fmt: skip


def kill(bundle: Bundle) -> None:
    _end(bundle, "kill", {})


def wait_ready(bundle: Bundle, pattern: str, timeout: float) -> str:
    reply = call(bundle, "wait_serial", pattern=pattern, timeout=timeout + 5, wait=timeout)
    return str(reply["match"])


def screenshot(bundle: Bundle, path: Path) -> Path:
    path = path.expanduser().absolute()
    call(bundle, "screenshot", path=str(path), timeout=30)
    if not path.is_file():
        raise VMDeskError("the screenshot was not written", hint="is the VM's display on?")
    return path
