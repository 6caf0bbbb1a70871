"""The SPICE guest agent's wire format (spice-protocol's ``vd_agent.h``), as a pure codec.

The host and spice-vdagent in the guest talk over the virtio-serial port
``com.redhat.spice.0``. The byte stream is a run of chunks, each a ``VDIChunkHeader``
(uint32 port, uint32 size) and ``size`` bytes; the chunks of one port, joined, are a run of
messages, each a ``VDAgentMessage`` header (uint32 protocol = 1, uint32 type, uint64 opaque,
uint32 size) and ``size`` bytes of data. Everything is little-endian.

Towards the guest a chunk carries at most :data:`MAX_CHUNK_DATA` bytes (the guest daemon
drops the port on a bigger one), so a message is split and only its first chunk holds the
message header. The guest itself writes each message as one chunk of any size: the decoder
takes both.

Clipboard bodies change shape with the capabilities both sides announced (a selection
prefix, a grab serial), so framing (:class:`Decoder`) knows nothing of them and the
``parse_*`` functions are told which apply.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from vmdesk.core.errors import ProtocolError

PROTOCOL = 1
MAX_CHUNK_DATA = 2048  # VD_AGENT_MAX_DATA_SIZE: a chunk's bytes, message header included
DEFAULT_MAX_CLIPBOARD = 100 * 1024 * 1024  # spice-gtk's default max-clipboard
DEFAULT_MAX_MESSAGE_SIZE = DEFAULT_MAX_CLIPBOARD + 64 * 1024

CHUNK_HEADER = struct.Struct("<II")
MESSAGE_HEADER = struct.Struct("<IIQI")
_U32 = struct.Struct("<I")
_SELECTION = struct.Struct("<B3x")  # uint8 selection, 3 reserved bytes
_MONITOR = struct.Struct("<IIIii")  # height, width, depth, x, y: height comes first
_U32_MAX = 0xFFFFFFFF
# What a guest's message may hold of capability words and offered types: vd_agent.h has 18
# capabilities (one word) and 7 clipboard types. More is read no further (capabilities) or
# refused (a grab), so a hostile guest's 64 MiB announce costs no more than a real one.
MAX_CAPS_WORDS = 8
MAX_GRAB_TYPES = 64


class Port(IntEnum):
    """``VDP_*``: who a chunk is for (or from), as seen by the guest."""

    CLIENT = 1
    SERVER = 2


class MessageType(IntEnum):
    """``VD_AGENT_*`` message types."""

    MOUSE_STATE = 1
    MONITORS_CONFIG = 2
    REPLY = 3
    CLIPBOARD = 4
    DISPLAY_CONFIG = 5
    ANNOUNCE_CAPABILITIES = 6
    CLIPBOARD_GRAB = 7
    CLIPBOARD_REQUEST = 8
    CLIPBOARD_RELEASE = 9
    FILE_XFER_START = 10
    FILE_XFER_STATUS = 11
    FILE_XFER_DATA = 12
    CLIENT_DISCONNECTED = 13
    MAX_CLIPBOARD = 14
    AUDIO_VOLUME_SYNC = 15
    GRAPHICS_DEVICE_INFO = 16


class Cap(IntEnum):
    """``VD_AGENT_CAP_*``: bit numbers in an ANNOUNCE_CAPABILITIES bitmap."""

    MOUSE_STATE = 0
    MONITORS_CONFIG = 1
    REPLY = 2
    CLIPBOARD = 3
    DISPLAY_CONFIG = 4
    CLIPBOARD_BY_DEMAND = 5
    CLIPBOARD_SELECTION = 6
    SPARSE_MONITORS_CONFIG = 7
    GUEST_LINEEND_LF = 8
    GUEST_LINEEND_CRLF = 9
    MAX_CLIPBOARD = 10
    AUDIO_VOLUME_SYNC = 11
    MONITORS_CONFIG_POSITION = 12
    FILE_XFER_DISABLED = 13
    FILE_XFER_DETAILED_ERRORS = 14
    GRAPHICS_DEVICE_INFO = 15
    CLIPBOARD_NO_RELEASE_ON_REGRAB = 16
    CLIPBOARD_GRAB_SERIAL = 17


class ClipboardType(IntEnum):
    """``VD_AGENT_CLIPBOARD_*`` data types."""

    NONE = 0
    UTF8_TEXT = 1
    IMAGE_PNG = 2
    IMAGE_BMP = 3
    IMAGE_TIFF = 4
    IMAGE_JPG = 5
    FILE_LIST = 6


class Selection(IntEnum):
    """``VD_AGENT_CLIPBOARD_SELECTION_*``: X11's selections (Windows has only CLIPBOARD)."""

    CLIPBOARD = 0
    PRIMARY = 1
    SECONDARY = 2


REPLY_SUCCESS = 1
REPLY_ERROR = 2
MONITORS_FLAG_USE_POS = 1 << 0


class SpiceProtocolError(ProtocolError):
    """Bytes that break the SPICE agent protocol, or a message that cannot be encoded."""


class MessageTooLarge(SpiceProtocolError):
    """A message (or chunk) announces more bytes than the decoder's cap allows."""


# -- decoded messages ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentMessage:
    """One reassembled message: its chunk port, type, opaque word and data."""

    port: int
    type: int
    opaque: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Capabilities:
    """ANNOUNCE_CAPABILITIES: the sender's capability bits; ``request`` asks for ours."""

    request: bool
    caps: frozenset[int]


@dataclass(frozen=True, slots=True)
class ClipboardGrab:
    """CLIPBOARD_GRAB: the sender owns ``selection`` and offers ``types``."""

    selection: int
    serial: int | None
    types: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ClipboardRequest:
    selection: int
    type: int


@dataclass(frozen=True, slots=True)
class Clipboard:
    """CLIPBOARD: the data of one type, answering a request."""

    selection: int
    type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ClipboardRelease:
    selection: int


@dataclass(frozen=True, slots=True)
class Reply:
    """REPLY: the guest's answer to a message of ``type`` (MONITORS_CONFIG, DISPLAY_CONFIG)."""

    type: int
    error: int


@dataclass(frozen=True, slots=True)
class Monitor:
    """One ``VDAgentMonConfig``; a 0x0 monitor is a disabled one (SPARSE_MONITORS_CONFIG)."""

    width: int
    height: int
    depth: int = 32
    x: int = 0
    y: int = 0


@dataclass(frozen=True, slots=True)
class MonitorsConfig:
    flags: int
    monitors: tuple[Monitor, ...]


# -- encoding --------------------------------------------------------------------------------


def check_u32(value: int, what: str) -> int:
    """``value``, if it fits a uint32 field (``what`` names it in the error)."""
    if not 0 <= value <= _U32_MAX:
        raise SpiceProtocolError(
            f"{what} {value} does not fit the agent protocol's uint32",
            hint="pass a value from 0 to 4294967295",
        )
    return value


def _selection_prefix(selection: int | None) -> bytes:
    if selection is None:
        return b""
    if not 0 <= selection <= 0xFF:
        raise SpiceProtocolError(
            f"clipboard selection {selection} does not fit a byte",
            hint="use Selection.CLIPBOARD, PRIMARY or SECONDARY",
        )
    return _SELECTION.pack(selection)


def encode_message(type: int, body: bytes, *, opaque: int = 0, port: int = Port.CLIENT) -> bytes:
    """The chunks of one message, each carrying at most MAX_CHUNK_DATA bytes."""
    check_u32(len(body), "message size")
    if not 0 <= opaque < 1 << 64:
        raise SpiceProtocolError(f"opaque {opaque} does not fit a uint64", hint="use 0")
    raw = MESSAGE_HEADER.pack(PROTOCOL, check_u32(type, "message type"), opaque, len(body)) + body
    out = bytearray()
    for start in range(0, len(raw), MAX_CHUNK_DATA):
        piece = raw[start : start + MAX_CHUNK_DATA]
        out += CHUNK_HEADER.pack(port, len(piece))
        out += piece
    return bytes(out)


def encode_announce_capabilities(caps: Iterable[int], *, request: bool) -> bytes:
    """ANNOUNCE_CAPABILITIES: ``request`` asks the guest to announce its own in return."""
    bits = sorted({int(c) for c in caps})
    if bits and bits[0] < 0:
        raise SpiceProtocolError(f"capability {bits[0]} is negative", hint="use Cap values")
    words = [0] * max(1, (bits[-1] // 32 + 1) if bits else 1)
    for bit in bits:
        words[bit // 32] |= 1 << (bit % 32)
    body = struct.pack(f"<I{len(words)}I", int(request), *words)
    return encode_message(MessageType.ANNOUNCE_CAPABILITIES, body)


def encode_clipboard_grab(
    types: Sequence[int], *, selection: int | None = None, serial: int | None = None
) -> bytes:
    """CLIPBOARD_GRAB: ``selection`` is written only when both sides have
    CLIPBOARD_SELECTION, ``serial`` only when both have CLIPBOARD_GRAB_SERIAL."""
    body = _selection_prefix(selection)
    if serial is not None:
        body += _U32.pack(check_u32(serial, "grab serial"))
    body += b"".join(_U32.pack(check_u32(t, "clipboard type")) for t in types)
    return encode_message(MessageType.CLIPBOARD_GRAB, body)


def encode_clipboard_request(type: int, *, selection: int | None = None) -> bytes:
    body = _selection_prefix(selection) + _U32.pack(check_u32(type, "clipboard type"))
    return encode_message(MessageType.CLIPBOARD_REQUEST, body)


def encode_clipboard(type: int, data: bytes, *, selection: int | None = None) -> bytes:
    body = _selection_prefix(selection) + _U32.pack(check_u32(type, "clipboard type")) + data
    return encode_message(MessageType.CLIPBOARD, body)


def encode_clipboard_release(*, selection: int | None = None) -> bytes:
    return encode_message(MessageType.CLIPBOARD_RELEASE, _selection_prefix(selection))


def encode_max_clipboard(limit: int) -> bytes:
    """MAX_CLIPBOARD: the guest sends no clipboard data above ``limit`` bytes (-1: none)."""
    if not -1 <= limit <= 0x7FFFFFFF:
        raise SpiceProtocolError(
            f"clipboard limit {limit} does not fit an int32", hint="use -1 to 2147483647"
        )
    return encode_message(MessageType.MAX_CLIPBOARD, struct.pack("<i", limit))


def encode_monitors_config(monitors: Sequence[Monitor], *, flags: int = 0) -> bytes:
    """MONITORS_CONFIG: the guest resizes its outputs and answers with a REPLY."""
    if not monitors:
        raise SpiceProtocolError("a monitors config needs a monitor", hint="pass at least one")
    body = struct.pack("<II", len(monitors), check_u32(flags, "monitors flags"))
    for m in monitors:
        for value, what in ((m.width, "width"), (m.height, "height"), (m.depth, "depth")):
            check_u32(value, f"monitor {what}")
        if not all(-(2**31) <= v < 2**31 for v in (m.x, m.y)):
            raise SpiceProtocolError(
                f"monitor position {m.x},{m.y} does not fit an int32", hint="use smaller x, y"
            )
        body += _MONITOR.pack(m.height, m.width, m.depth, m.x, m.y)
    return encode_message(MessageType.MONITORS_CONFIG, body)


# -- decoding bodies -------------------------------------------------------------------------


def _short(what: str, size: int, need: int) -> SpiceProtocolError:
    return SpiceProtocolError(
        f"{what} of {size} bytes is too short (needs {need})",
        hint="the guest agent and this host disagree on the negotiated capabilities",
    )


def _split_selection(data: bytes, selection: bool, what: str, need: int) -> tuple[int, bytes]:
    """The selection (CLIPBOARD when there is no prefix) and the rest of the body."""
    head = _SELECTION.size if selection else 0
    if len(data) < head + need:
        raise _short(what, len(data), head + need)
    if not selection:
        return Selection.CLIPBOARD, data
    return data[0], data[head:]


def parse_capabilities(data: bytes) -> Capabilities:
    """A trailing partial word is ignored, as ``VD_AGENT_CAPS_SIZE_FROM_MSG_SIZE`` does, and
    so is every word past the first :data:`MAX_CAPS_WORDS` (no capability lives there)."""
    if len(data) < 4:
        raise _short("ANNOUNCE_CAPABILITIES", len(data), 4)
    (request,) = _U32.unpack_from(data)
    count = min((len(data) - 4) // 4, MAX_CAPS_WORDS)
    words = struct.unpack_from(f"<{count}I", data, 4)
    caps = frozenset(i * 32 + b for i, word in enumerate(words) for b in range(32) if word >> b & 1)
    return Capabilities(request=bool(request), caps=caps)


def parse_clipboard_grab(data: bytes, *, selection: bool, serial: bool) -> ClipboardGrab:
    sel, rest = _split_selection(data, selection, "CLIPBOARD_GRAB", 4 if serial else 0)
    number: int | None = None
    if serial:
        (number,) = _U32.unpack_from(rest)
        rest = rest[4:]
    if len(rest) // 4 > MAX_GRAB_TYPES:
        raise SpiceProtocolError(
            f"CLIPBOARD_GRAB offers {len(rest) // 4} types, more than the {MAX_GRAB_TYPES} taken",
            hint="the agent protocol has 7 clipboard types; the guest agent is broken or hostile",
        )
    types = struct.unpack_from(f"<{len(rest) // 4}I", rest)
    return ClipboardGrab(selection=sel, serial=number, types=types)


def parse_clipboard_request(data: bytes, *, selection: bool) -> ClipboardRequest:
    sel, rest = _split_selection(data, selection, "CLIPBOARD_REQUEST", 4)
    return ClipboardRequest(selection=sel, type=_U32.unpack_from(rest)[0])


def parse_clipboard(data: bytes, *, selection: bool) -> Clipboard:
    sel, rest = _split_selection(data, selection, "CLIPBOARD", 4)
    return Clipboard(selection=sel, type=_U32.unpack_from(rest)[0], data=rest[4:])


def parse_clipboard_release(data: bytes, *, selection: bool) -> ClipboardRelease:
    sel, _ = _split_selection(data, selection, "CLIPBOARD_RELEASE", 0)
    return ClipboardRelease(selection=sel)


def parse_reply(data: bytes) -> Reply:
    if len(data) < 8:
        raise _short("REPLY", len(data), 8)
    kind, error = struct.unpack_from("<II", data)
    return Reply(type=kind, error=error)


def parse_max_clipboard(data: bytes) -> int:
    if len(data) < 4:
        raise _short("MAX_CLIPBOARD", len(data), 4)
    return int(struct.unpack_from("<i", data)[0])


def parse_monitors_config(data: bytes) -> MonitorsConfig:
    if len(data) < 8:
        raise _short("MONITORS_CONFIG", len(data), 8)
    count, flags = struct.unpack_from("<II", data)
    need = 8 + count * _MONITOR.size
    if len(data) < need:
        raise _short("MONITORS_CONFIG", len(data), need)
    monitors = tuple(
        Monitor(width=w, height=h, depth=d, x=x, y=y)
        for h, w, d, x, y in _MONITOR.iter_unpack(data[8:need])
    )
    return MonitorsConfig(flags=flags, monitors=monitors)


# -- framing ---------------------------------------------------------------------------------


class Decoder:
    """Chunks in, messages out: ``feed`` takes the port's bytes as they come, split
    anywhere, and returns the messages they complete. Each port's chunks are joined on
    their own, so a message header may straddle chunks and the ports may interleave.

    A message (or chunk) bigger than ``max_message_size`` data bytes, a foreign protocol
    number or an unknown port raises :class:`SpiceProtocolError` before its bytes are
    buffered; the stream has then lost its framing, so every later ``feed`` raises the
    same error until :meth:`reset` (which goes with reopening the port)."""

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._head = bytearray()  # a chunk header still arriving
        self._port = 0
        self._left = 0  # bytes of the current chunk still to come
        self._streams: dict[int, bytearray] = {}
        self._broken: SpiceProtocolError | None = None

    def reset(self) -> None:
        self._head.clear()
        self._left = 0
        self._streams.clear()
        self._broken = None

    def feed(self, data: bytes) -> list[AgentMessage]:
        if self._broken is not None:
            raise self._broken
        try:
            return self._feed(memoryview(data))
        except SpiceProtocolError as exc:
            self._broken = exc
            raise

    def _feed(self, view: memoryview) -> list[AgentMessage]:
        out: list[AgentMessage] = []
        pos = 0
        while pos < len(view):
            if self._left == 0:
                take = min(CHUNK_HEADER.size - len(self._head), len(view) - pos)
                self._head += view[pos : pos + take]
                pos += take
                if len(self._head) == CHUNK_HEADER.size:
                    self._start_chunk()
                continue
            take = min(self._left, len(view) - pos)
            self._streams.setdefault(self._port, bytearray()).extend(view[pos : pos + take])
            pos += take
            self._left -= take
            out += self._messages(self._port)
        return out

    def _start_chunk(self) -> None:
        port, size = CHUNK_HEADER.unpack(self._head)
        self._head.clear()
        if port not in (Port.CLIENT, Port.SERVER):
            raise SpiceProtocolError(
                f"agent chunk for port {port}", hint="the port's byte stream is out of step"
            )
        if size > self.max_message_size + MESSAGE_HEADER.size:
            raise MessageTooLarge(
                f"agent chunk of {size} bytes is over the {self.max_message_size}-byte cap",
                hint="the guest sent more than the clipboard limit allows; reopen the port",
            )
        self._port, self._left = port, size

    def _messages(self, port: int) -> list[AgentMessage]:
        buf = self._streams[port]
        out: list[AgentMessage] = []
        while len(buf) >= MESSAGE_HEADER.size:
            protocol, kind, opaque, size = MESSAGE_HEADER.unpack_from(buf)
            if protocol != PROTOCOL:
                raise SpiceProtocolError(
                    f"agent message for protocol {protocol}, not {PROTOCOL}",
                    hint="the port's byte stream is out of step, or not a SPICE agent's",
                )
            if size > self.max_message_size:
                raise MessageTooLarge(
                    f"agent message of {size} bytes is over the {self.max_message_size}-byte cap",
                    hint="the guest sent more than the clipboard limit allows; reopen the port",
                )
            end = MESSAGE_HEADER.size + size
            if len(buf) < end:
                break
            out.append(AgentMessage(port, kind, opaque, bytes(buf[MESSAGE_HEADER.size : end])))
            del buf[:end]
        return out
