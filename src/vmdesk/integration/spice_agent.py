"""The host side of the SPICE guest agent, as a sans-I/O state machine.

:class:`AgentSession` reads bytes from the ``com.redhat.spice.0`` port (``receive``) and
hands back the bytes to write to it; it never touches a socket or a clock. It plays the part
spice-gtk plays for a SPICE client: it negotiates capabilities, keeps who owns each
clipboard selection, answers the guest's clipboard requests from the host's offer, converts
line endings for CRLF guests, enforces the clipboard size limit both ways and sends monitor
layouts.

Rules taken from spice-gtk and spice-vdagent, which each decide on the *other* side's
capabilities (so they agree only when both sides announce what they use):

- the 4-byte selection prefix is there only when both sides have CLIPBOARD_SELECTION; without
  it only CLIPBOARD exists;
- a grab carries a serial only when both sides have CLIPBOARD_GRAB_SERIAL. Each side counts
  per selection from 0 (reset whenever a side announces with ``request`` set), sends its
  counter and adds one; a received grab is taken only when its serial equals the counter
  (which then advances), else it is stale and dropped. When both grab at once with the same
  serial the host (the client) wins: the guest takes serial ``counter - 1`` as the client's;
- this host announces CLIPBOARD_NO_RELEASE_ON_REGRAB and keeps it: a new offer is a grab,
  never a release and a grab. A guest without it may release right before grabbing again,
  which :class:`GuestReleased` says so a UI can wait a moment before acting on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from vmdesk.core.errors import Conflict
from vmdesk.integration import spice_wire as wire
from vmdesk.integration.spice_wire import Cap, ClipboardType, MessageType, Selection

# What this host announces: what spice-gtk announces, less the mouse, display config and
# file transfer it does not do here.
HOST_CAPABILITIES: frozenset[int] = frozenset(
    {
        Cap.MONITORS_CONFIG,
        Cap.REPLY,
        Cap.CLIPBOARD_BY_DEMAND,
        Cap.CLIPBOARD_SELECTION,
        Cap.MONITORS_CONFIG_POSITION,
        Cap.CLIPBOARD_NO_RELEASE_ON_REGRAB,
        Cap.CLIPBOARD_GRAB_SERIAL,
    }
)
TRACKED = (Selection.CLIPBOARD, Selection.PRIMARY)  # X11's SECONDARY is never used
_SERIAL_MOD = 1 << 32
_LONE_LF = re.compile(rb"(?<!\r)\n")


class AgentNotReady(Conflict):
    """The guest agent has not said (yet) that it can do what was asked."""


class ClipboardTooLarge(wire.SpiceProtocolError):
    """Clipboard data above the session's ``max_clipboard`` limit."""


class Owner(Enum):
    NONE = "none"
    HOST = "host"
    GUEST = "guest"


@dataclass(frozen=True, slots=True)
class SelectionState:
    """Who owns a selection and the types on offer (the owner's)."""

    owner: Owner
    types: tuple[int, ...]


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GuestCapabilities:
    caps: frozenset[int]
    request: bool


@dataclass(frozen=True, slots=True)
class GuestGrabbed:
    """The guest owns ``selection`` now (any host offer on it is gone)."""

    selection: int
    types: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class GuestReleased:
    """The guest's selection is empty; ``regrab_may_follow`` when the guest lacks
    NO_RELEASE_ON_REGRAB (spice-gtk waits 0.5 s before believing such a release)."""

    selection: int
    regrab_may_follow: bool


@dataclass(frozen=True, slots=True)
class GuestRequested:
    """The guest asked for the host's data; ``served`` when the reply carries it (else it
    carries none, so the guest's paste ends instead of waiting)."""

    selection: int
    type: int
    served: bool


@dataclass(frozen=True, slots=True)
class ClipboardData:
    """The guest's answer to :meth:`AgentSession.request` (empty: the guest had none)."""

    selection: int
    type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class GuestReply:
    """The guest acknowledged a message of ``type`` (MONITORS_CONFIG)."""

    type: int
    ok: bool


@dataclass(frozen=True, slots=True)
class Ignored:
    """A guest message dropped on purpose: stale, malformed, too large or unexpected."""

    type: int
    reason: str


Event = (
    GuestCapabilities
    | GuestGrabbed
    | GuestReleased
    | GuestRequested
    | ClipboardData
    | GuestReply
    | Ignored
)


@dataclass(frozen=True, slots=True)
class Received:
    """What :meth:`AgentSession.receive` made of some bytes: events, and bytes to write
    back to the port (answers the protocol calls for, in order)."""

    events: tuple[Event, ...]
    reply: bytes


@dataclass(slots=True)
class _Selection:
    owner: Owner = Owner.NONE
    types: tuple[int, ...] = ()
    data: dict[int, bytes] = field(default_factory=dict)  # the host's offer
    announced: bool = False  # the host's offer was grabbed towards this guest
    serial: int = 0


def to_crlf(text: bytes) -> bytes:
    """LF to CRLF, leaving lines that already end in CRLF alone (as spice-gtk does)."""
    return _LONE_LF.sub(b"\r\n", text)


def from_crlf(text: bytes) -> bytes:
    """CRLF to LF; a lone CR stays."""
    return text.replace(b"\r\n", b"\n")


class AgentSession:
    """One host-side conversation with spice-vdagent; see the module's docstring.

    ``max_clipboard`` bounds clipboard data both ways: larger offers raise, larger data
    from the guest is dropped (and the guest is told the limit when it can hear it)."""

    def __init__(
        self,
        *,
        max_clipboard: int = wire.DEFAULT_MAX_CLIPBOARD,
        capabilities: Iterable[int] = HOST_CAPABILITIES,
    ) -> None:
        if not 0 <= max_clipboard <= 0x7FFFFFFF:
            raise wire.SpiceProtocolError(
                f"clipboard limit {max_clipboard} is out of range",
                hint="use 0 to 2147483647 bytes",
            )
        self.max_clipboard = max_clipboard
        self.host_caps = frozenset(int(c) for c in capabilities)
        # Headroom over the limit: slightly larger data is dropped, not a broken stream.
        self._decoder = wire.Decoder(max_clipboard + 64 * 1024)
        self._guest_caps: frozenset[int] | None = None
        self._selections = {s: _Selection() for s in TRACKED}
        self._monitors = b""  # the latest MONITORS_CONFIG, encoded
        self._monitors_sparse = False
        self._monitors_sent = False
        self._pending: set[tuple[int, int]] = set()

    # -- state -------------------------------------------------------------------------------

    @property
    def guest_caps(self) -> frozenset[int] | None:
        """The guest's capabilities, None until it announces them."""
        return self._guest_caps

    def guest_has(self, cap: int) -> bool:
        return self._guest_caps is not None and cap in self._guest_caps

    def both_have(self, cap: int) -> bool:
        return cap in self.host_caps and self.guest_has(cap)

    @property
    def guest_crlf(self) -> bool:
        """The guest's text uses CRLF (Windows): convert it both ways."""
        return self.guest_has(Cap.GUEST_LINEEND_CRLF) and not self.guest_has(Cap.GUEST_LINEEND_LF)

    @property
    def clipboard_ready(self) -> bool:
        """Both sides do the by-demand clipboard (grab, request, data, release)."""
        return self.both_have(Cap.CLIPBOARD_BY_DEMAND)

    def selection(self, selection: int) -> SelectionState:
        state = self._selections[self._tracked(selection)]
        return SelectionState(state.owner, state.types)

    def host_data(self, selection: int, type: int) -> bytes:
        """The host's own offer of ``type`` on ``selection`` (empty when it has none)."""
        state = self._selections[self._tracked(selection)]
        return state.data.get(type, b"") if state.owner is Owner.HOST else b""

    # -- connection --------------------------------------------------------------------------

    def connected(self) -> bytes:
        """The port opened: start afresh with the guest and ask for its capabilities."""
        self.reset()
        return wire.encode_announce_capabilities(self.host_caps, request=True)

    def reset(self) -> None:
        """The guest agent went away (it restarted, the port closed): forget what it said
        and owned, keep the host's offers and monitors to announce again once it is back."""
        self._decoder.reset()
        self._forget_guest()

    def _forget_guest(self) -> None:
        self._guest_caps = None
        self._pending.clear()
        self._monitors_sent = False
        for state in self._selections.values():
            state.serial = 0
            state.announced = False
            if state.owner is Owner.GUEST:
                state.owner, state.types = Owner.NONE, ()

    def receive(self, data: bytes) -> Received:
        """Bytes read from the port. Framing errors (wrong protocol, a message over the
        limit's headroom) raise :class:`wire.SpiceProtocolError`: call :meth:`connected`
        after reopening the port. A bad message body is only :class:`Ignored`."""
        events: list[Event] = []
        reply = bytearray()
        for message in self._decoder.feed(data):
            try:
                reply += self._dispatch(message, events)
            except wire.SpiceProtocolError as exc:
                events.append(Ignored(message.type, str(exc)))
        return Received(tuple(events), bytes(reply))

    # -- host actions ------------------------------------------------------------------------

    def offer(self, selection: int, data: Mapping[int, bytes]) -> bytes:
        """The host owns ``selection`` with ``data`` (type -> bytes; text as UTF-8 with LF).
        Returns the grab to send, or nothing while the guest cannot hear it yet (the offer
        is announced when it can). Later requests are served from ``data``."""
        state = self._selections[self._tracked(selection)]
        if not data or ClipboardType.NONE in data:
            raise wire.SpiceProtocolError(
                "an offer needs data of at least one clipboard type",
                hint="pass {ClipboardType.UTF8_TEXT: b'...'}; call release() to give it up",
            )
        for kind, value in data.items():
            if len(value) > self.max_clipboard:
                raise ClipboardTooLarge(
                    f"clipboard data of {len(value)} bytes is over the "
                    f"{self.max_clipboard}-byte limit",
                    hint="offer less, or raise max_clipboard",
                )
            wire.check_u32(kind, "clipboard type")
        state.owner, state.types, state.data = Owner.HOST, tuple(data), dict(data)
        state.announced = False
        return self._announce(selection, state)

    def release(self, selection: int) -> bytes:
        """The host's selection is empty now; nothing to send unless the host owned it."""
        state = self._selections[self._tracked(selection)]
        if state.owner is not Owner.HOST:
            return b""
        was_announced = state.announced
        state.owner, state.types, state.data, state.announced = Owner.NONE, (), {}, False
        if not was_announced:
            return b""
        return wire.encode_clipboard_release(selection=self._prefix(selection))

    def request(self, selection: int, type: int) -> bytes:
        """Ask the guest for its ``selection`` as ``type``; the answer comes back as a
        :class:`ClipboardData` event."""
        state = self._selections[self._tracked(selection)]
        if state.owner is not Owner.GUEST or type not in state.types:
            raise AgentNotReady(
                f"the guest offers no type {type} on selection {selection}",
                hint="request a type from the guest's last GuestGrabbed event",
            )
        self._pending.add((selection, type))
        return wire.encode_clipboard_request(type, selection=self._prefix(selection))

    def set_monitors(self, sizes: Sequence[tuple[int, int]], *, depth: int = 32) -> bytes:
        """Ask the guest to size its outputs ``(width, height)``, left to right; 0x0 is a
        disabled output, for guests with SPARSE_MONITORS_CONFIG only. Sent once the guest
        says it can take it; the latest layout is sent again after a reset."""
        if not sizes or any(w < 0 or h < 0 or (w == 0) != (h == 0) for w, h in sizes):
            raise wire.SpiceProtocolError(
                f"monitor sizes {list(sizes)} are not a layout",
                hint="give one or more (width, height) above 0, or (0, 0) for a disabled one",
            )
        sparse = any(w == 0 for w, _ in sizes)
        if sparse and self._guest_caps is not None:
            self._sparse_or_raise()
        x, monitors = 0, []
        for w, h in sizes:
            monitors.append(wire.Monitor(width=w, height=h, depth=depth, x=x, y=0))
            x += w
        # Encoded now so a bad value raises here, not when the guest turns up.
        self._monitors = wire.encode_monitors_config(monitors, flags=wire.MONITORS_FLAG_USE_POS)
        self._monitors_sparse, self._monitors_sent = sparse, False
        return self._send_monitors()

    def _sparse_or_raise(self) -> None:
        if not self.guest_has(Cap.SPARSE_MONITORS_CONFIG):
            raise AgentNotReady(
                "the guest agent cannot take a disabled (0x0) monitor",
                hint="give every monitor a size; only SPARSE_MONITORS_CONFIG guests take 0x0",
            )

    # -- internals ---------------------------------------------------------------------------

    @staticmethod
    def _tracked(selection: int) -> Selection:
        if selection not in TRACKED:
            raise wire.SpiceProtocolError(
                f"selection {selection} is not kept by this host",
                hint="use Selection.CLIPBOARD or Selection.PRIMARY",
            )
        return Selection(selection)

    def _prefix(self, selection: int) -> int | None:
        return selection if self.both_have(Cap.CLIPBOARD_SELECTION) else None

    def _can_send(self, selection: int) -> bool:
        """The guest can hear about this selection: by-demand clipboard, and a prefix to
        name it unless it is CLIPBOARD."""
        return self.clipboard_ready and (
            selection == Selection.CLIPBOARD or self.both_have(Cap.CLIPBOARD_SELECTION)
        )

    def _announce(self, selection: int, state: _Selection) -> bytes:
        if state.owner is not Owner.HOST or state.announced or not self._can_send(selection):
            return b""
        serial = None
        if self.both_have(Cap.CLIPBOARD_GRAB_SERIAL):
            serial, state.serial = state.serial, (state.serial + 1) % _SERIAL_MOD
        state.announced = True
        return wire.encode_clipboard_grab(
            state.types, selection=self._prefix(selection), serial=serial
        )

    def _send_monitors(self) -> bytes:
        if self._monitors_sent or not self._monitors:
            return b""
        if not self.guest_has(Cap.MONITORS_CONFIG):
            return b""
        if self._monitors_sparse and not self.guest_has(Cap.SPARSE_MONITORS_CONFIG):
            return b""  # a layout this guest cannot take: kept for a guest that can
        self._monitors_sent = True
        return self._monitors

    def _dispatch(self, message: wire.AgentMessage, events: list[Event]) -> bytes:
        kind = message.type
        if kind == MessageType.ANNOUNCE_CAPABILITIES:
            return self._on_capabilities(wire.parse_capabilities(message.data), events)
        if kind == MessageType.REPLY:
            reply = wire.parse_reply(message.data)
            events.append(GuestReply(reply.type, reply.error == wire.REPLY_SUCCESS))
            return b""
        clipboard = (
            MessageType.CLIPBOARD_GRAB,
            MessageType.CLIPBOARD_REQUEST,
            MessageType.CLIPBOARD,
            MessageType.CLIPBOARD_RELEASE,
        )
        if kind not in clipboard:
            events.append(Ignored(kind, "a message type this host does not handle"))
            return b""
        if not self.clipboard_ready:
            # Its layout depends on capabilities the guest has not announced.
            events.append(Ignored(kind, "clipboard message before the guest's capabilities"))
            return b""
        return self._on_clipboard(message, events)

    def _on_capabilities(self, caps: wire.Capabilities, events: list[Event]) -> bytes:
        out = bytearray()
        if caps.request:
            # The guest agent (re)started: it counts serials from 0 and owns nothing.
            self._forget_guest()
            out += wire.encode_announce_capabilities(self.host_caps, request=False)
        self._guest_caps = caps.caps
        events.append(GuestCapabilities(caps.caps, caps.request))
        if self.guest_has(Cap.MAX_CLIPBOARD):
            out += wire.encode_max_clipboard(self.max_clipboard)
        for selection, state in self._selections.items():
            # spice-vdagentd announces again when the session's agent comes (or goes):
            # an offer grabbed before then reached no one, so grab it again.
            if state.owner is Owner.HOST:
                state.announced = False
            out += self._announce(selection, state)
        out += self._send_monitors()
        return bytes(out)

    def _on_clipboard(self, message: wire.AgentMessage, events: list[Event]) -> bytes:
        prefix = self.both_have(Cap.CLIPBOARD_SELECTION)
        kind, data = message.type, message.data
        if kind == MessageType.CLIPBOARD_GRAB:
            serial = self.both_have(Cap.CLIPBOARD_GRAB_SERIAL)
            self._on_grab(wire.parse_clipboard_grab(data, selection=prefix, serial=serial), events)
            return b""
        if kind == MessageType.CLIPBOARD_REQUEST:
            return self._on_request(wire.parse_clipboard_request(data, selection=prefix), events)
        if kind == MessageType.CLIPBOARD:
            self._on_data(wire.parse_clipboard(data, selection=prefix), events)
            return b""
        self._on_release(wire.parse_clipboard_release(data, selection=prefix), events)
        return b""

    def _known(self, kind: int, selection: int, events: list[Event]) -> _Selection | None:
        state = self._selections.get(Selection(selection)) if selection in TRACKED else None
        if state is None:
            events.append(Ignored(kind, f"selection {selection} is not kept by this host"))
        return state

    def _on_grab(self, grab: wire.ClipboardGrab, events: list[Event]) -> None:
        state = self._known(MessageType.CLIPBOARD_GRAB, grab.selection, events)
        if state is None:
            return
        if grab.serial is not None:
            if grab.serial != state.serial:
                reason = f"stale grab: serial {grab.serial}, expected {state.serial}"
                events.append(Ignored(MessageType.CLIPBOARD_GRAB, reason))
                return
            state.serial = (state.serial + 1) % _SERIAL_MOD
        state.owner, state.types, state.data, state.announced = Owner.GUEST, grab.types, {}, False
        events.append(GuestGrabbed(grab.selection, grab.types))

    def _on_release(self, release: wire.ClipboardRelease, events: list[Event]) -> None:
        state = self._known(MessageType.CLIPBOARD_RELEASE, release.selection, events)
        if state is None:
            return
        if state.owner is not Owner.GUEST:
            events.append(Ignored(MessageType.CLIPBOARD_RELEASE, "the guest did not own it"))
            return
        state.owner, state.types = Owner.NONE, ()
        regrab = not self.guest_has(Cap.CLIPBOARD_NO_RELEASE_ON_REGRAB)
        events.append(GuestReleased(release.selection, regrab))

    def _on_request(self, request: wire.ClipboardRequest, events: list[Event]) -> bytes:
        state = self._known(MessageType.CLIPBOARD_REQUEST, request.selection, events)
        if state is None:
            return b""
        value = state.data.get(request.type) if state.owner is Owner.HOST else None
        if value is not None and request.type == ClipboardType.UTF8_TEXT and self.guest_crlf:
            value = to_crlf(value)
        if value is not None and len(value) > self.max_clipboard:
            value = None  # grew past the limit in CRLF form
        events.append(GuestRequested(request.selection, request.type, value is not None))
        # An empty answer still ends the guest's wait for the paste.
        return wire.encode_clipboard(
            request.type, value or b"", selection=self._prefix(request.selection)
        )

    def _on_data(self, clip: wire.Clipboard, events: list[Event]) -> None:
        if (clip.selection, clip.type) not in self._pending:
            events.append(Ignored(MessageType.CLIPBOARD, "clipboard data nobody asked for"))
            return
        self._pending.discard((clip.selection, clip.type))
        if len(clip.data) > self.max_clipboard:
            reason = f"{len(clip.data)} bytes of clipboard data, over the limit"
            events.append(Ignored(MessageType.CLIPBOARD, reason))
            return
        data = clip.data
        if clip.type == ClipboardType.UTF8_TEXT:
            data = data.removesuffix(b"\0")  # Windows agents may count the terminator
            if self.guest_crlf:
                data = from_crlf(data)
        events.append(ClipboardData(clip.selection, clip.type, data))
