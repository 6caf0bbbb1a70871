"""The supervisor's control protocol: one JSON line each way on the VM's control socket.

A request is ``{"op": OP, "version": PROTOCOL_VERSION, ...its fields}``; a reply is
``{"ok": true, ...its fields}``, or an error ``{"ok": false, "error": MESSAGE, "hint": ...,
"kind": CLASS, "bases": [...]}`` (plus ``error_class`` for a QMPError, ``problems`` for a
ConfigError; see :meth:`vmdesk.core.errors.VMDeskError.to_wire`), rebuilt as the same class
by :func:`error_from`. The supervisor's ready report (the "hello" on the starter's pipe) and
its status reply carry its ``protocol`` version.

The request and reply types are TypedDicts: this module is on the `vmdesk start` and
`vmdesk list` paths, where dataclasses (which import ``inspect``) would cost milliseconds;
:data:`FIELDS` is what is checked at run time.
"""

from __future__ import annotations

import json

from vmdesk.core import errors

TYPE_CHECKING = False  # not typing's: `typing` stays off the VM start path
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Literal, NotRequired, TypeAlias, TypedDict

PROTOCOL_VERSION = 3  # 1: requests without a version and errors without a kind; 2: no agents
# Served to a client of any version, so a VM started by another VM-Desk can always be stopped.
ACROSS_VERSIONS = frozenset({"status", "stop", "kill"})
STOP_TIMEOUT = 30.0  # how long a stop waits for the guest before it pulls the plug
WAIT_SERIAL = 60.0
CLIPBOARD_WAIT = 10.0
AGENT_WAIT = 2.0  # guest_info: how long a guest agent that is not there is waited for
EXEC_WAIT = 60.0
TEXT = "text/plain;charset=utf-8"

_NEEDED = None  # a field without a default must be sent
# Each op's fields beyond op and version: name -> (type, default).
FIELDS: dict[str, dict[str, tuple[type, object]]] = {
    "status": {},
    "stop": {"force": (bool, False), "stop_timeout": (float, STOP_TIMEOUT)},
    "kill": {},
    "pause": {},
    "resume": {},
    "reboot": {},
    "screenshot": {"path": (str, _NEEDED)},
    "suspend": {},
    "window": {},
    "snapshot_save": {"tag": (str, _NEEDED), "disk_only": (bool, False)},
    "snapshot_load": {"tag": (str, _NEEDED)},
    "snapshot_delete": {"tag": (str, _NEEDED)},
    "wait_serial": {"pattern": (str, _NEEDED), "wait": (float, WAIT_SERIAL)},
    # the guests' agents (supervisor/guest_channels.py); clipboard data is base64
    "clipboard_get": {"selection": (str, "clipboard"), "type": (str, ""),
                      "wait": (float, CLIPBOARD_WAIT)},
    "clipboard_set": {"data": (str, _NEEDED), "type": (str, TEXT), "selection": (str, "clipboard")},
    "clipboard_watch": {"seen": (int, -1), "wait": (float, 30.0)},
    "display_size": {"width": (int, _NEEDED), "height": (int, _NEEDED)},
    "guest_info": {"wait": (float, AGENT_WAIT)},
    "guest_exec": {"argv": (list, _NEEDED), "input": (str, ""), "wait": (float, EXEC_WAIT)},
    "memory": {"target": (int, 0)},  # bytes for the guest; 0: only ask
}  # fmt: skip

if TYPE_CHECKING:
    # -- requests (what decode_request returns) -----------------------------------------

    class StatusRequest(TypedDict):
        op: Literal["status"]
        version: int

    class StopRequest(TypedDict):
        op: Literal["stop"]
        version: int
        force: bool
        stop_timeout: float

    class KillRequest(TypedDict):
        op: Literal["kill"]
        version: int

    class PauseRequest(TypedDict):
        op: Literal["pause"]
        version: int

    class ResumeRequest(TypedDict):
        op: Literal["resume"]
        version: int

    class RebootRequest(TypedDict):
        op: Literal["reboot"]
        version: int

    class ScreenshotRequest(TypedDict):
        op: Literal["screenshot"]
        version: int
        path: str

    class SuspendRequest(TypedDict):
        op: Literal["suspend"]
        version: int

    class WindowRequest(TypedDict):
        op: Literal["window"]
        version: int

    class SnapshotSaveRequest(TypedDict):
        op: Literal["snapshot_save"]
        version: int
        tag: str
        disk_only: bool

    class SnapshotLoadRequest(TypedDict):
        op: Literal["snapshot_load"]
        version: int
        tag: str

    class SnapshotDeleteRequest(TypedDict):
        op: Literal["snapshot_delete"]
        version: int
        tag: str

    class WaitSerialRequest(TypedDict):
        op: Literal["wait_serial"]
        version: int
        pattern: str
        wait: float

    class ClipboardGetRequest(TypedDict):
        op: Literal["clipboard_get"]
        version: int
        selection: str  # clipboard or primary
        type: str  # a MIME type, or "" for the guest's best
        wait: float

    class ClipboardSetRequest(TypedDict):
        op: Literal["clipboard_set"]
        version: int
        data: str  # base64
        type: str
        selection: str

    class ClipboardWatchRequest(TypedDict):
        op: Literal["clipboard_watch"]
        version: int
        seen: int  # the generation the caller has seen
        wait: float

    class DisplaySizeRequest(TypedDict):
        op: Literal["display_size"]
        version: int
        width: int
        height: int

    class GuestInfoRequest(TypedDict):
        op: Literal["guest_info"]
        version: int
        wait: float

    class GuestExecRequest(TypedDict):
        op: Literal["guest_exec"]
        version: int
        argv: list[str]
        input: str  # base64 stdin, or ""
        wait: float

    class MemoryRequest(TypedDict):
        op: Literal["memory"]
        version: int
        target: int

    Request: TypeAlias = (
        StatusRequest | StopRequest | KillRequest | PauseRequest | ResumeRequest
        | RebootRequest | ScreenshotRequest | SuspendRequest | WindowRequest
        | SnapshotSaveRequest | SnapshotLoadRequest | SnapshotDeleteRequest | WaitSerialRequest
        | ClipboardGetRequest | ClipboardSetRequest | ClipboardWatchRequest
        | DisplaySizeRequest | GuestInfoRequest | GuestExecRequest | MemoryRequest
    )  # fmt: skip

    # -- replies (each also carries "ok": true on the wire) ------------------------------

    class StatusReply(TypedDict):
        status: str
        pid: int
        engine_pid: int | None
        accel: str
        since: float
        vnc: str | None
        console: str
        protocol: int
        agents: dict[str, str]  # guest_agent, spice_agent: connected, waiting or none

    class StopReply(TypedDict):
        forced: bool

    class KillReply(TypedDict):
        pass

    PauseReply: TypeAlias = StatusReply  # pause, resume and reboot answer with the status
    ResumeReply: TypeAlias = StatusReply
    RebootReply: TypeAlias = StatusReply

    class ScreenshotReply(TypedDict):
        path: str

    class SuspendReply(TypedDict):
        seconds: float

    class WindowReply(TypedDict):
        window: Literal["opened", "already open"]

    class SnapshotReply(TypedDict):
        seconds: float
        quiesced: bool  # the guest's file systems were frozen around a disk-only snapshot

    SnapshotSaveReply: TypeAlias = SnapshotReply
    SnapshotLoadReply: TypeAlias = SnapshotReply
    SnapshotDeleteReply: TypeAlias = SnapshotReply

    class WaitSerialReply(TypedDict):
        match: str

    class ClipboardReply(TypedDict):
        owner: str  # guest, host or none
        types: list[str]  # what the owner offers
        type: str | None
        data: str | None  # base64; None for an empty clipboard
        generation: int

    class ClipboardSetReply(TypedDict):
        delivered: bool  # the guest's agent is there to hear it (else: when it comes)

    class ClipboardWatchReply(TypedDict):
        generation: int
        owner: str
        types: list[str]

    class DisplaySizeReply(TypedDict):
        sent: bool

    class GuestInfoReply(TypedDict):
        agent: Literal["connected", "not answering"]
        addresses: list[dict[str, Any]]
        ipv4: str | None
        ipv6: str | None
        os: dict[str, str | None] | None
        host_name: str | None

    class GuestExecReply(TypedDict):
        exit_code: int | None
        signal: int | None
        stdout: str  # base64
        stderr: str
        truncated: bool

    class MemoryReply(TypedDict):
        booted: int  # bytes the VM started with: the most the balloon can give back
        guest: int  # bytes the guest has now (booted less the balloon)
        host_rss: int | None  # bytes of the host's memory the hypervisor uses now

    Reply: TypeAlias = (
        StatusReply | StopReply | KillReply | ScreenshotReply | SuspendReply | WindowReply
        | SnapshotReply | WaitSerialReply | ClipboardReply | ClipboardSetReply
        | ClipboardWatchReply | DisplaySizeReply | GuestInfoReply | GuestExecReply | MemoryReply
    )  # fmt: skip

    class Hello(TypedDict):
        """The supervisor's ready report: the VM runs (``ok``), or why it does not."""

        ok: bool
        protocol: int
        pid: NotRequired[int]
        accel: NotRequired[str]
        engine: NotRequired[str]
        resumed: NotRequired[bool]
        already_running: NotRequired[bool]


# -- the client's side ----------------------------------------------------------------------


def encode_request(op: str, fields: Mapping[str, Any]) -> bytes:
    """The wire line for one request from this version."""
    return json.dumps({"op": op, "version": PROTOCOL_VERSION, **fields}).encode() + b"\n"


def error_from(
    reply: Mapping[str, Any], extra: Mapping[str, type[errors.VMDeskError]] | None = None
) -> errors.VMDeskError:
    """The error an ``ok: false`` reply (or hello) describes, as its own class."""
    return errors.from_wire(reply, extra)


# -- the supervisor's side ------------------------------------------------------------------


def decode_request(line: bytes, vm: str) -> Request:
    """The typed request on ``line``; ProtocolError when it is malformed or names no op, a
    Conflict when it comes from a VM-Desk version whose ``op`` this one cannot serve."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise _malformed(f"the request is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise _malformed("the request is not a JSON object")
    op, version = data.get("op"), data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise _malformed(f"the request's version is {version!r}, not a number")
    same = version == PROTOCOL_VERSION
    if op not in ACROSS_VERSIONS and not same:
        raise _other_version(vm, str(op), version)
    if not isinstance(op, str) or op not in FIELDS:
        raise errors.ProtocolError(
            f"unknown request {op!r}", hint="the supervisor serves " + ", ".join(FIELDS)
        )
    request: dict[str, Any] = {"op": op, "version": version}
    spec = FIELDS[op]
    for name, (kind, default) in spec.items():
        request[name] = _field(op, name, kind, data.get(name, default))
    # Another version may send fields this one does not know; from this one, it is a typo.
    unknown = set(data) - set(spec) - {"op", "version"}
    if unknown and same:
        raise _malformed(f"{op} takes no {', '.join(sorted(unknown))}")
    return request  # type: ignore[return-value]  # checked against FIELDS just now


def _field(op: str, name: str, kind: type, value: object) -> object:
    if value is _NEEDED:
        raise _malformed(f"{op} needs {name}")
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is not float and isinstance(value, kind):
        return value
    raise _malformed(f"{op}'s {name} is {value!r}, not a {kind.__name__}")


def _malformed(what: str) -> errors.ProtocolError:
    return errors.ProtocolError(
        f"malformed request to the VM's supervisor: {what}",
        hint='requests are one JSON object per line: {"op": ..., "version": '
        f"{PROTOCOL_VERSION}, ...}}",
    )


def _other_version(vm: str, op: str, version: int) -> errors.Conflict:
    return errors.Conflict(
        f"VM {vm!r} runs under a supervisor from another VM-Desk version (protocol "
        f"{PROTOCOL_VERSION}), which cannot serve {op!r} for this vmdesk (protocol {version})",
        hint=f"stop it with this vmdesk (`vmdesk stop {vm}`; stop and kill work across "
        "versions), then start it again",
    )


def encode_reply(reply: Mapping[str, Any]) -> bytes:
    return json.dumps({**reply, "ok": True}).encode() + b"\n"


def encode_error(exc: errors.VMDeskError) -> bytes:
    return json.dumps({"ok": False, **exc.to_wire()}).encode() + b"\n"
