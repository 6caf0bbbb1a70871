"""The SPICE agent codec: golden byte layouts (written out with struct here, field by field
as vd_agent.h lays them out), chunking, reassembly from any split, and the size cap."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

import pytest

from vmdesk.core.errors import ProtocolError, VMDeskError
from vmdesk.integration import spice_wire as wire
from vmdesk.integration.spice_wire import Cap, ClipboardType, MessageType, Selection


def chunk(size: int, port: int = 1) -> bytes:
    """VDIChunkHeader: uint32 port, uint32 size."""
    return struct.pack("<II", port, size)


def header(kind: int, size: int, opaque: int = 0) -> bytes:
    """VDAgentMessage: uint32 protocol (1), uint32 type, uint64 opaque, uint32 size."""
    return struct.pack("<IIQI", 1, kind, opaque, size)


def one_chunk(kind: int, body: bytes, port: int = 1) -> bytes:
    """A whole message in one chunk, as the guest daemon writes it."""
    return chunk(20 + len(body), port) + header(kind, len(body)) + body


# -- numbers -------------------------------------------------------------------------------


def test_message_types_are_vd_agent_h_numbers() -> None:
    assert [(m.name, m.value) for m in MessageType] == [
        ("MOUSE_STATE", 1), ("MONITORS_CONFIG", 2), ("REPLY", 3), ("CLIPBOARD", 4),
        ("DISPLAY_CONFIG", 5), ("ANNOUNCE_CAPABILITIES", 6), ("CLIPBOARD_GRAB", 7),
        ("CLIPBOARD_REQUEST", 8), ("CLIPBOARD_RELEASE", 9), ("FILE_XFER_START", 10),
        ("FILE_XFER_STATUS", 11), ("FILE_XFER_DATA", 12), ("CLIENT_DISCONNECTED", 13),
        ("MAX_CLIPBOARD", 14), ("AUDIO_VOLUME_SYNC", 15), ("GRAPHICS_DEVICE_INFO", 16),
    ]  # fmt: skip


def test_capability_bits_are_vd_agent_h_numbers() -> None:
    assert [(c.name, c.value) for c in Cap] == [
        ("MOUSE_STATE", 0), ("MONITORS_CONFIG", 1), ("REPLY", 2), ("CLIPBOARD", 3),
        ("DISPLAY_CONFIG", 4), ("CLIPBOARD_BY_DEMAND", 5), ("CLIPBOARD_SELECTION", 6),
        ("SPARSE_MONITORS_CONFIG", 7), ("GUEST_LINEEND_LF", 8), ("GUEST_LINEEND_CRLF", 9),
        ("MAX_CLIPBOARD", 10), ("AUDIO_VOLUME_SYNC", 11), ("MONITORS_CONFIG_POSITION", 12),
        ("FILE_XFER_DISABLED", 13), ("FILE_XFER_DETAILED_ERRORS", 14),
        ("GRAPHICS_DEVICE_INFO", 15), ("CLIPBOARD_NO_RELEASE_ON_REGRAB", 16),
        ("CLIPBOARD_GRAB_SERIAL", 17),
    ]  # fmt: skip


def test_clipboard_types_selections_and_limits() -> None:
    assert [int(t) for t in ClipboardType] == [0, 1, 2, 3, 4, 5, 6]
    assert (Selection.CLIPBOARD, Selection.PRIMARY, Selection.SECONDARY) == (0, 1, 2)
    assert (wire.Port.CLIENT, wire.Port.SERVER) == (1, 2)
    assert wire.MAX_CHUNK_DATA == 2048
    assert (wire.CHUNK_HEADER.size, wire.MESSAGE_HEADER.size) == (8, 20)


# -- golden layouts ------------------------------------------------------------------------


def test_release_without_prefix_spelled_out_in_hex() -> None:
    assert wire.encode_clipboard_release() == bytes.fromhex(
        "01000000 14000000"  # chunk: port 1, 20 bytes
        "01000000 09000000 0000000000000000 00000000"  # protocol 1, RELEASE, opaque, size 0
    )


def test_announce_capabilities() -> None:
    caps = [Cap.CLIPBOARD_BY_DEMAND, Cap.CLIPBOARD_SELECTION, Cap.CLIPBOARD_GRAB_SERIAL]
    body = struct.pack("<II", 1, (1 << 5) | (1 << 6) | (1 << 17))  # request, caps[0]
    assert wire.encode_announce_capabilities(caps, request=True) == one_chunk(6, body)
    assert wire.encode_announce_capabilities([], request=False) == one_chunk(
        6, struct.pack("<II", 0, 0)
    )


def test_announce_capabilities_past_bit_31_takes_a_second_word() -> None:
    body = struct.pack("<III", 0, 1 << 2, 1 << (40 - 32))
    assert wire.encode_announce_capabilities([40, 2], request=False) == one_chunk(6, body)
    parsed = wire.parse_capabilities(body)
    assert parsed == wire.Capabilities(request=False, caps=frozenset({2, 40}))


def test_clipboard_grab_with_and_without_prefix_and_serial() -> None:
    types = [ClipboardType.UTF8_TEXT, ClipboardType.IMAGE_PNG]
    assert wire.encode_clipboard_grab(types) == one_chunk(7, struct.pack("<II", 1, 2))
    with_prefix = struct.pack("<B3xII", 1, 1, 2)  # selection PRIMARY, 3 reserved, types
    assert wire.encode_clipboard_grab(types, selection=1) == one_chunk(7, with_prefix)
    full = struct.pack("<B3xIII", 0, 7, 1, 2)  # selection, serial 7, types
    assert wire.encode_clipboard_grab(types, selection=0, serial=7) == one_chunk(7, full)
    assert wire.encode_clipboard_grab(types, serial=7) == one_chunk(7, struct.pack("<III", 7, 1, 2))


def test_clipboard_request_data_release_max() -> None:
    assert wire.encode_clipboard_request(1) == one_chunk(8, struct.pack("<I", 1))
    assert wire.encode_clipboard_request(2, selection=1) == one_chunk(8, struct.pack("<B3xI", 1, 2))
    assert wire.encode_clipboard(1, b"hi") == one_chunk(4, struct.pack("<I", 1) + b"hi")
    assert wire.encode_clipboard(1, b"hi", selection=0) == one_chunk(
        4, b"\x00\x00\x00\x00" + struct.pack("<I", 1) + b"hi"
    )
    assert wire.encode_clipboard_release(selection=1) == one_chunk(9, b"\x01\x00\x00\x00")
    assert wire.encode_max_clipboard(-1) == one_chunk(14, struct.pack("<i", -1))
    assert wire.encode_max_clipboard(1000) == one_chunk(14, b"\xe8\x03\x00\x00")


def test_monitors_config_puts_height_before_width() -> None:
    monitors = [wire.Monitor(1920, 1080), wire.Monitor(1280, 720, depth=24, x=1920, y=-5)]
    body = struct.pack(
        "<II" "IIIii" "IIIii",
        2, wire.MONITORS_FLAG_USE_POS,  # num_of_monitors, flags
        1080, 1920, 32, 0, 0,  # height, width, depth, x, y
        720, 1280, 24, 1920, -5,
    )  # fmt: skip
    encoded = wire.encode_monitors_config(monitors, flags=1)
    assert encoded == one_chunk(2, body)
    assert wire.parse_monitors_config(body) == wire.MonitorsConfig(1, tuple(monitors))


@pytest.mark.parametrize(
    "call",
    [
        lambda: wire.encode_clipboard_grab([1], selection=256),
        lambda: wire.encode_clipboard_grab([-1]),
        lambda: wire.encode_clipboard_grab([1], serial=1 << 32),
        lambda: wire.encode_clipboard_request(1, selection=-1),
        lambda: wire.encode_monitors_config([]),
        lambda: wire.encode_monitors_config([wire.Monitor(-1, 10)]),
        lambda: wire.encode_monitors_config([wire.Monitor(10, 10, x=1 << 31)]),
        lambda: wire.encode_max_clipboard(-2),
        lambda: wire.encode_announce_capabilities([-1], request=True),
        lambda: wire.encode_message(1, b"", opaque=-1),
    ],
)
def test_encoding_refuses_values_the_fields_cannot_hold(call: Callable[[], bytes]) -> None:
    with pytest.raises(wire.SpiceProtocolError) as caught:
        call()
    assert caught.value.hint  # says what to pass instead
    assert isinstance(caught.value, ProtocolError) and isinstance(caught.value, VMDeskError)


# -- chunking ------------------------------------------------------------------------------


def _chunks(stream: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(stream):
        port, size = struct.unpack_from("<II", stream, pos)
        out.append((port, stream[pos + 8 : pos + 8 + size]))
        pos += 8 + size
    assert pos == len(stream)
    return out


def test_a_1_mib_message_is_split_into_2048_byte_chunks() -> None:
    data = random.Random(1).randbytes(1 << 20)
    stream = wire.encode_clipboard(ClipboardType.IMAGE_PNG, data, selection=0)
    chunks = _chunks(stream)
    total = 20 + 8 + len(data)  # message header, selection prefix and type, data
    assert len(chunks) == -(-total // 2048) == 513  # 512 full chunks and 28 bytes
    assert all(port == 1 for port, _ in chunks)
    assert [len(p) for _, p in chunks] == [2048] * 512 + [28]
    # Only the first chunk carries the message header; the rest continue its data.
    first = chunks[0][1]
    assert first[:20] == header(MessageType.CLIPBOARD, 8 + len(data))
    assert first[20:28] == struct.pack("<B3xI", 0, 2)
    assert b"".join(p for _, p in chunks)[28:] == data


def test_a_message_of_exactly_one_chunk_is_not_split() -> None:
    stream = wire.encode_clipboard(1, b"x" * (2048 - 24))
    assert [len(p) for _, p in _chunks(stream)] == [2048]
    stream = wire.encode_clipboard(1, b"x" * (2048 - 23))
    assert [len(p) for _, p in _chunks(stream)] == [2048, 1]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_reassembly_from_random_splits(seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(1 << 20)
    stream = (
        wire.encode_clipboard_release()
        + wire.encode_clipboard(ClipboardType.IMAGE_PNG, data, selection=1)
        + wire.encode_clipboard_request(1)
    )
    decoder = wire.Decoder()
    got: list[wire.AgentMessage] = []
    pos = 0
    while pos < len(stream):
        step = rng.choice([1, 3, 7, 8, 19, 20, 21, 2047, 2056, 5000, 70000])
        got += decoder.feed(stream[pos : pos + step])
        pos += step
    assert [(m.port, m.type, len(m.data)) for m in got] == [
        (1, 9, 0),
        (1, 4, 8 + (1 << 20)),
        (1, 8, 4),
    ]
    clip = wire.parse_clipboard(got[1].data, selection=True)
    assert (clip.selection, clip.type, clip.data == data) == (1, 2, True)


def test_the_guests_single_large_chunk_is_taken() -> None:
    body = struct.pack("<I", 1) + b"y" * 10_000  # spice-vdagent: one chunk, any size
    [message] = wire.Decoder().feed(one_chunk(4, body))
    assert message == wire.AgentMessage(port=1, type=4, opaque=0, data=body)


def test_a_message_header_may_straddle_chunks_and_ports_interleave() -> None:
    raw = header(MessageType.CLIPBOARD_REQUEST, 4, opaque=99) + struct.pack("<I", 1)
    server_msg = one_chunk(MessageType.REPLY, struct.pack("<II", 2, 1), port=2)
    stream = chunk(7) + raw[:7] + server_msg + chunk(len(raw) - 7) + raw[7:]
    got = wire.Decoder().feed(stream)
    assert got == [
        wire.AgentMessage(2, MessageType.REPLY, 0, struct.pack("<II", 2, 1)),
        wire.AgentMessage(1, MessageType.CLIPBOARD_REQUEST, 99, struct.pack("<I", 1)),
    ]


def test_byte_by_byte_and_empty_chunks() -> None:
    stream = chunk(0) + wire.encode_clipboard_grab([1, 2], selection=0, serial=3)
    decoder = wire.Decoder()
    got = [m for i in range(len(stream)) for m in decoder.feed(stream[i : i + 1])]
    assert len(got) == 1
    grab = wire.parse_clipboard_grab(got[0].data, selection=True, serial=True)
    assert grab == wire.ClipboardGrab(selection=0, serial=3, types=(1, 2))
    assert decoder.feed(b"") == []


# -- the size cap and broken streams --------------------------------------------------------


def test_a_message_over_the_cap_is_refused_from_its_header() -> None:
    decoder = wire.Decoder(max_message_size=1000)
    assert decoder.feed(one_chunk(4, b"z" * 1000)) != []  # at the cap: fine
    # Only the headers of a 1001-byte message: refused before any of its data arrives.
    with pytest.raises(wire.MessageTooLarge, match="1001 bytes is over the 1000-byte cap"):
        decoder.feed(chunk(500) + header(4, 1001))
    # The stream has lost its framing: it stays refused until reset.
    with pytest.raises(wire.MessageTooLarge):
        decoder.feed(b"\x00")
    decoder.reset()
    assert len(decoder.feed(wire.encode_clipboard_request(1))) == 1


def test_a_chunk_over_the_cap_is_refused_from_its_header() -> None:
    decoder = wire.Decoder(max_message_size=1000)
    with pytest.raises(wire.MessageTooLarge) as caught:
        decoder.feed(chunk(1021))
    assert caught.value.hint and "clipboard limit" in caught.value.hint


def test_a_foreign_protocol_or_port_is_refused() -> None:
    with pytest.raises(wire.SpiceProtocolError, match="protocol 2"):
        wire.Decoder().feed(chunk(20) + struct.pack("<IIQI", 2, 4, 0, 0))
    with pytest.raises(wire.SpiceProtocolError, match="port 3"):
        wire.Decoder().feed(chunk(0, port=3))
    with pytest.raises(wire.SpiceProtocolError, match="port 0"):
        wire.Decoder().feed(chunk(0, port=0))


# -- bodies --------------------------------------------------------------------------------


def test_bodies_parse_back() -> None:
    assert wire.parse_clipboard_request(struct.pack("<I", 5), selection=False) == (
        wire.ClipboardRequest(selection=0, type=5)
    )
    assert wire.parse_clipboard(struct.pack("<B3xI", 1, 1) + b"ab", selection=True) == (
        wire.Clipboard(selection=1, type=1, data=b"ab")
    )
    assert wire.parse_clipboard_release(b"", selection=False) == wire.ClipboardRelease(0)
    assert wire.parse_clipboard_release(b"\x01\x00\x00\x00", selection=True).selection == 1
    assert wire.parse_clipboard_grab(b"", selection=False, serial=False).types == ()
    assert wire.parse_reply(struct.pack("<II", 2, 1)) == wire.Reply(type=2, error=1)
    assert wire.parse_max_clipboard(struct.pack("<i", -1)) == -1


def test_a_trailing_partial_word_is_ignored() -> None:
    caps = wire.parse_capabilities(struct.pack("<II", 1, 1 << 3) + b"\xff\xff")
    assert caps == wire.Capabilities(request=True, caps=frozenset({3}))
    grab = wire.parse_clipboard_grab(struct.pack("<I", 1) + b"\x02", selection=False, serial=False)
    assert grab.types == (1,)


@pytest.mark.parametrize(
    ("parse", "data"),
    [
        (wire.parse_capabilities, b"\x01\x00"),
        (lambda d: wire.parse_clipboard_grab(d, selection=True, serial=True), b"\x00" * 7),
        (lambda d: wire.parse_clipboard_request(d, selection=True), b"\x00" * 4),
        (lambda d: wire.parse_clipboard(d, selection=False), b"\x01\x00"),
        (lambda d: wire.parse_clipboard_release(d, selection=True), b""),
        (wire.parse_reply, b"\x00" * 7),
        (wire.parse_max_clipboard, b""),
        (wire.parse_monitors_config, struct.pack("<II", 2, 0) + b"\x00" * 20),
    ],
)
def test_short_bodies_are_refused(parse: Callable[[bytes], object], data: bytes) -> None:
    with pytest.raises(wire.SpiceProtocolError, match="too short"):
        parse(data)
