"""Inside a running guest, through its agents: addresses, OS, commands, the clipboard and
the display's size. Each asks the VM's supervisor, which holds the agents' channels (see
vmdesk.supervisor.guest_channels); light to import, as `vmdesk ip` runs in loops."""

from __future__ import annotations

import base64
from typing import Any

from vmdesk.core.library import Library
from vmdesk.service.library import find

EXEC_TIMEOUT = 60.0
TEXT = "text/plain;charset=utf-8"
_SLACK = 5.0  # the control socket waits this much longer than the supervisor's own wait


def _call(
    library: Library, ref: str, op: str, wait: float, slack: float = 0.0, **args: Any
) -> dict[str, Any]:
    from vmdesk.supervisor import client

    timeout = wait + slack + _SLACK
    return client.call(find(library, ref), op, timeout=timeout, wait=wait, **args)


def info(library: Library, ref: str, wait: float = 2.0) -> dict[str, Any]:
    """What the guest agent says: ``agent`` ("connected" or "not answering"), ``ipv4``,
    ``ipv6``, ``addresses``, ``os`` and ``host_name``."""
    reply = _call(library, ref, "guest_info", wait)
    reply.pop("ok", None)
    return reply


def run(
    library: Library,
    ref: str,
    argv: list[str],
    *,
    stdin: bytes | None = None,
    timeout: float = EXEC_TIMEOUT,
) -> dict[str, Any]:
    """Run ``argv`` in the guest: ``exit_code`` (None when a ``signal`` ended it),
    ``stdout`` and ``stderr`` as bytes, ``truncated``."""
    data = base64.b64encode(stdin).decode("ascii") if stdin else ""
    reply = _call(library, ref, "guest_exec", timeout, argv=argv, input=data)
    return {
        "exit_code": reply["exit_code"],
        "signal": reply["signal"],
        "stdout": base64.b64decode(reply["stdout"]),
        "stderr": base64.b64decode(reply["stderr"]),
        "truncated": bool(reply["truncated"]),
    }


def clipboard(
    library: Library, ref: str, *, kind: str = "", selection: str = "clipboard", wait: float = 10
) -> tuple[str | None, bytes | None, str]:
    """The guest's clipboard: (MIME type, bytes, owner); (None, None, owner) when empty."""
    # the supervisor may wait twice: for the agent, then for its data
    reply = _call(library, ref, "clipboard_get", wait, type=kind, selection=selection, slack=wait)
    data = reply["data"]
    return reply["type"], None if data is None else base64.b64decode(data), str(reply["owner"])


def set_clipboard(
    library: Library, ref: str, data: bytes, *, kind: str = TEXT, selection: str = "clipboard"
) -> bool:
    """Offer ``data`` to the guest as its clipboard; whether its agent is there to hear it
    now (else it gets the offer when it comes)."""
    from vmdesk.supervisor import client

    encoded = base64.b64encode(data).decode("ascii")
    reply = client.call(find(library, ref), "clipboard_set", timeout=30.0, data=encoded,
                        type=kind, selection=selection)  # fmt: skip
    return bool(reply["delivered"])


def watch_clipboard(library: Library, ref: str, seen: int, wait: float = 30.0) -> dict[str, Any]:
    """Wait until the guest's clipboard changes after generation ``seen`` (or ``wait``):
    ``generation``, ``owner``, ``types``."""
    return _call(library, ref, "clipboard_watch", wait, seen=seen)


def resize(library: Library, ref: str, width: int, height: int) -> bool:
    """Ask the running guest to show its display at ``width`` x ``height``; whether its
    agent heard it now (it is sent again whenever the agent comes back)."""
    from vmdesk.supervisor import client

    reply = client.call(find(library, ref), "display_size", width=width, height=height)
    return bool(reply["sent"])
