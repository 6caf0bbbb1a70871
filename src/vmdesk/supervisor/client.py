"""Starting a VM's supervisor and asking it to do things (what the CLI and web UI call)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from vmdesk.core.bundle import Bundle
from vmdesk.core.errors import Conflict, EngineError, GuestTimeout, VMDeskError
from vmdesk.core.states import ENDED
from vmdesk.supervisor import status as vmstatus

TYPE_CHECKING = False  # not typing's: `typing` stays off the VM start path
if TYPE_CHECKING:
    from typing import Any

START_TIMEOUT = 60.0  # includes a KVM probe on the first start after a host boot


class NotRunning(Conflict):
    """The VM is not running, so it cannot do that."""


KINDS = {"NotRunning": NotRunning}  # error kinds defined here, beyond core.errors.KINDS


def _name(bundle: Bundle) -> str:
    return bundle.dir_name.removesuffix(".vmdesk")


def start(bundle: Bundle, *, timeout: float = START_TIMEOUT, fork: bool = False) -> dict[str, Any]:
    """Start the VM's supervisor (detached) and return once the VM runs.

    ``fork=True`` runs the supervisor in a fork of this process instead of a new Python,
    which boots the VM sooner; only for callers without threads or servers (the CLI).
    Returns the supervisor's report; ``already_running`` is set when another start won.
    """
    read_fd, write_fd = os.pipe()
    # Not on macOS: Apple's frameworks (Virtualization, AppKit) are not safe to use in a
    # forked child that has not exec'd, and the vz engine runs them in the supervisor.
    if fork and sys.platform != "darwin":
        pid = _fork_supervisor(bundle, write_fd)
    else:
        with bundle.files.supervisor_log.open("ab") as log:
            pid = subprocess.Popen(
                [sys.executable, "-m", "vmdesk.supervisor", str(bundle.path), "--ready-fd",
                 str(write_fd)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(write_fd,),
                start_new_session=True,  # outlives this CLI and its terminal
            ).pid  # fmt: skip
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
    report: dict[str, Any] = json.loads(data) if data else {}
    if report.get("ok"):
        return report  # the supervisor runs on; it is reaped by init once we exit
    _reap(pid)
    if not data:
        record = vmstatus.last_exit(bundle.path)
        raise EngineError(
            record.get("reason") or "the VM's supervisor exited before the VM started",
            hint=record.get("hint") or f"see {bundle.files.supervisor_log}",
        )
    if report.get("already_running"):
        return report
    raise _error(report)


def _error(reply: dict[str, Any]) -> VMDeskError:
    """The error the supervisor sent, as the class it raised (protocol.py)."""
    from vmdesk.supervisor import protocol  # not before the VM runs: see start()

    return protocol.error_from(reply, KINDS)


def _reap(pid: int, timeout: float = 10.0) -> None:
    """Collect an exiting supervisor, so it does not linger as a zombie."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.01)


def _fork_supervisor(bundle: Bundle, ready_fd: int) -> int:
    """Fork; the child becomes the VM's supervisor in its own session and never returns."""
    log = os.open(bundle.files.supervisor_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.close(log)
        return pid
    code = 1
    try:
        os.setsid()  # outlives this CLI and its terminal
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        # Keep nothing else of the CLI's (a caller's sockets must not live on in a VM).
        os.closerange(3, ready_fd)
        os.closerange(ready_fd + 1, 1 << 16)
        from vmdesk.supervisor.launcher import main

        code = main([str(bundle.path), "--ready-fd", str(ready_fd)])
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def call(bundle: Bundle, op: str, *, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
    """Send a request to the running VM's supervisor; NotRunning if it is not running."""
    current = vmstatus.derive(bundle.path)
    if current["status"] in ENDED:
        raise NotRunning(
            f"VM {_name(bundle)!r} is not running", hint=f"`vmdesk start {_name(bundle)}`"
        )
    if current["status"] == "suspended":
        raise NotRunning(
            f"VM {_name(bundle)!r} is suspended to disk",
            hint=f"resume it with `vmdesk start {_name(bundle)}`",
        )
    try:
        reply = vmstatus.request(
            vmstatus.sockets_for(bundle.path).control, op, timeout=timeout, **args
        )
    except vmstatus.ControlError as exc:
        raise EngineError(str(exc), hint=f"see {bundle.files.supervisor_log}") from exc
    if not reply.get("ok"):
        raise _error(reply)
    return reply


def wait_stopped(bundle: Bundle, timeout: float) -> None:
    """Wait until the supervisor has let go of the bundle."""
    deadline = time.monotonic() + timeout
    while bundle.is_locked():
        if time.monotonic() > deadline:
            raise GuestTimeout(f"VM {_name(bundle)!r} did not stop within {timeout:g} s")
        time.sleep(0.02)


def _ended(bundle: Bundle, states: tuple[str, ...] = ENDED) -> bool:
    """After a request whose answer was lost: did the VM end (in one of ``states``) anyway?"""
    try:
        wait_stopped(bundle, 30)
    except GuestTimeout:
        return False
    return vmstatus.derive(bundle.path)["status"] in states


def _end(
    bundle: Bundle,
    op: str,
    lost_reply: dict[str, Any],
    *,
    states: tuple[str, ...] = ENDED,
    **args: Any,
) -> dict[str, Any]:
    """A request that ends the VM; returns once the supervisor has let go of the bundle."""
    try:
        reply = call(bundle, op, **args)
    except EngineError:
        if not _ended(bundle, states):
            raise
        return lost_reply
    wait_stopped(bundle, 30)
    return reply


def stop(bundle: Bundle, *, force: bool = False, timeout: float = 30.0) -> dict[str, Any]:
    return _end(
        bundle, "stop", {"forced": force},
        force=force, timeout=timeout + 15, stop_timeout=timeout,
    )  # fmt: skip


def suspend(bundle: Bundle, *, timeout: float = 600.0) -> dict[str, Any]:
    """Save the running VM's state into its bundle and end it; `start` resumes it."""
    return _end(bundle, "suspend", {}, states=("suspended",), timeout=timeout)


def discard_suspended(bundle: Bundle) -> bool:
    """Throw away a suspended VM's saved state (it then boots afresh); False if none."""
    try:
        bundle.files.suspended_state.unlink()
    except FileNotFoundError:
        return False
    vmstatus.record_exit(bundle.path, "stopped", "")
    return True


def kill(bundle: Bundle) -> None:
    _end(bundle, "kill", {})


def wait_ready(bundle: Bundle, pattern: str, timeout: float) -> str:
    reply = call(bundle, "wait_serial", pattern=pattern, timeout=timeout + 5, wait=timeout)
    return str(reply["match"])


def window(bundle: Bundle) -> dict[str, Any]:
    """Ask the running VM's supervisor to show its screen in a native window (vz only:
    the supervisor owns the VM, and AppKit needs the process that owns it)."""
    return call(bundle, "window", timeout=30)


def screenshot(bundle: Bundle, path: Path) -> Path:
    path = path.expanduser().absolute()
    call(bundle, "screenshot", path=str(path), timeout=30)
    if not path.is_file():
        raise VMDeskError("the screenshot was not written", hint="is the VM's display on?")
    return path
