"""Connecting to a libvirt daemon, and libvirt's errors as ours (one line, with a hint).

libvirt-python is imported here only, lazily: a desk without it still runs local VMs.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from vmdesk.core.errors import Conflict, HostError, HostToolMissing, NotFound, VMDeskError

# libvirt's qemu+ssh transport runs this instead of plain ssh: one SSH connection per host,
# kept for a while and shared by the commands that follow (as Lima does for its VMs). A
# handshake costs ~300 ms on these machines; only the first command pays it.
SSH_MUX = """#!/bin/sh
# Written by VM-Desk (engines/libvirt/connection.py): ssh, sharing one connection per host.
exec ssh -o ControlMaster=auto -o ControlPersist=300 \\
    -o ControlPath="${XDG_RUNTIME_DIR:-/tmp}/vmdesk-ssh-%C" "$@"
"""
CONNECT_TIMEOUT = 20.0  # an SSH host that drops packets would hold a connection for minutes
T = TypeVar("T")


def module() -> Any:
    try:
        import libvirt
    except ImportError:
        raise HostToolMissing(
            "libvirt-python is not installed, so VM-Desk can't reach libvirt hosts",
            hint="pip install 'vmdesk[libvirt]' (it builds against libvirt's headers: "
            "apt install libvirt-dev pkg-config)",
        ) from None
    # libvirt prints every error to stderr by default; ours say it once, with a hint
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    _event_loop(libvirt)
    return libvirt


_loop_lock = threading.Lock()
_loop_started = False


def _event_loop(libvirt: Any) -> None:
    """libvirt's own event loop, in a thread of its own, registered before any connection
    opens: console streams are non-blocking and driven by it. (A blocking stream read in one
    thread starves another thread's calls on the same connection: seen, a resume that hung.)"""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, daemon=True, name="libvirt-events").start()
        _loop_started = True


def _hint_for(code: int, libvirt: Any, where: str) -> tuple[type[VMDeskError], str]:
    if code in (libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_AUTH_CANCELLED):
        return HostError, f"check that your SSH agent or libvirt's auth lets you into {where}"
    if code in (libvirt.VIR_ERR_OPERATION_DENIED, libvirt.VIR_ERR_ACCESS_DENIED):
        return HostError, f"your user may not do that on {where}: ask for libvirt access there"
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return NotFound, f"see `vmdesk list` for the VMs on {where}"
    if code in (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_OPERATION_FAILED):
        return Conflict, "see `vmdesk status` for what the VM is doing"
    return HostError, f"see the libvirt daemon's log on {where}"


# What ssh says when libvirt's qemu+ssh transport fails, and what to do about it
SSH_FAILURES = (
    ("Permission denied", "the host refused the SSH login",
     "load a key it accepts into your SSH agent (ssh-add), or name its user: "
     "qemu+ssh://USER@HOST/system"),
    ("Host key verification failed", "the host's SSH key is not known here",
     "ssh to the host once by hand and accept its key"),
    ("Could not resolve hostname", "the host's name does not resolve",
     "check the name in the URI (`vmdesk host list`)"),
    ("ssh: connect to host", "no SSH connection to the host",
     "check that its sshd runs and the port in the URI"),
)  # fmt: skip


def _message(text: str) -> str:
    """libvirt's message on one line, without ssh's notes about known hosts."""
    text = re.sub(r"Warning: Permanently added .*? to the list of known hosts\.\s*", "", text)
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or "libvirt failed"


def translate(exc: Exception, where: str) -> VMDeskError:
    """A libvirtError as one of ours, on one line; an SSH login that failed says so."""
    libvirt = module()
    code = exc.get_error_code() if isinstance(exc, libvirt.libvirtError) else None
    message = _message(str(exc))
    for needle, said, hint in SSH_FAILURES:
        if needle in message:
            return HostError(f"{where}: {said} ({message})", hint=hint)
    kind, hint = _hint_for(code or 0, libvirt, where)
    return kind(f"{where}: {message}", hint=hint)


@contextmanager
def errors(where: str) -> Iterator[None]:
    """libvirt's errors inside the block become ours."""
    libvirt = module()
    try:
        yield
    except libvirt.libvirtError as exc:
        raise translate(exc, where) from None


def _within(seconds: float, call: Callable[[], T], what: str) -> T:
    """``call()`` in a thread, given up on after ``seconds`` (libvirt has no timeout)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name="libvirt-connect")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise HostError(
            f"{what} did not answer within {seconds:.0f} s",
            hint="check that the host is up and reachable (ssh to it by hand)",
        )
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def ssh_mux() -> Path:
    from vmdesk.core import paths

    path = paths.cache_dir() / "tools" / "ssh-mux"
    try:
        if path.read_text() == SSH_MUX:
            return path
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".ssh-mux.{os.getpid()}")
    tmp.write_text(SSH_MUX)
    tmp.chmod(0o755)
    tmp.replace(path)
    return path


def shared_ssh(uri: str) -> str:
    """``uri`` with its SSH connection shared (:data:`SSH_MUX`), unless it names its own
    ssh command; the stored URI stays as the user gave it."""
    parts = urlsplit(uri)
    if parts.scheme != "qemu+ssh" or "command=" in parts.query:
        return uri
    query = "&".join(filter(None, [parts.query, f"command={quote(str(ssh_mux()))}"]))
    return urlunsplit(parts._replace(query=query))


def connect(uri: str, where: str, *, timeout: float = CONNECT_TIMEOUT) -> Any:
    """An open virConnect to ``uri``; ``where`` names the host in errors."""
    libvirt = module()
    target = shared_ssh(uri)

    def opening() -> Any:
        with errors(where):
            return libvirt.open(target)

    return _within(timeout, opening, where)
