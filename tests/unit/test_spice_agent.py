"""The SPICE agent's host side against a scripted guest: the guest's bytes are built here
as spice-vdagent writes them (one chunk per message), and what the host sends is decoded
and compared field by field."""

from __future__ import annotations

import struct

import pytest

from vmdesk.core.errors import Conflict
from vmdesk.integration import spice_agent as agent
from vmdesk.integration import spice_wire as wire
from vmdesk.integration.spice_agent import (
    AgentSession,
    ClipboardData,
    GuestCapabilities,
    GuestGrabbed,
    GuestReleased,
    GuestReply,
    GuestRequested,
    Ignored,
    Owner,
)
from vmdesk.integration.spice_wire import Cap, MessageType, Selection

TEXT, PNG = wire.ClipboardType.UTF8_TEXT, wire.ClipboardType.IMAGE_PNG
CLIPBOARD, PRIMARY = Selection.CLIPBOARD, Selection.PRIMARY

# What spice-vdagent (vdagentd.c) announces.
VDAGENT = frozenset(
    {
        Cap.MOUSE_STATE, Cap.MONITORS_CONFIG, Cap.REPLY, Cap.CLIPBOARD_BY_DEMAND,
        Cap.CLIPBOARD_SELECTION, Cap.SPARSE_MONITORS_CONFIG, Cap.GUEST_LINEEND_LF,
        Cap.MAX_CLIPBOARD, Cap.AUDIO_VOLUME_SYNC, Cap.GRAPHICS_DEVICE_INFO,
        Cap.CLIPBOARD_NO_RELEASE_ON_REGRAB, Cap.CLIPBOARD_GRAB_SERIAL,
    }
)  # fmt: skip
# An old agent: by-demand clipboard, nothing newer.
OLD = frozenset({Cap.MONITORS_CONFIG, Cap.REPLY, Cap.CLIPBOARD_BY_DEMAND, Cap.GUEST_LINEEND_LF})
WINDOWS = (VDAGENT - {Cap.GUEST_LINEEND_LF}) | {Cap.GUEST_LINEEND_CRLF}


def send(kind: int, body: bytes) -> bytes:
    """One guest message, in one chunk to the client port."""
    return struct.pack("<IIIIQI", 1, 20 + len(body), 1, kind, 0, len(body)) + body


def caps(bits: frozenset[int], *, request: bool = True) -> bytes:
    word = sum(1 << b for b in bits)
    return send(MessageType.ANNOUNCE_CAPABILITIES, struct.pack("<II", int(request), word))


def grab(types: list[int], selection: int | None = 0, serial: int | None = 0) -> bytes:
    body = b"" if selection is None else struct.pack("<B3x", selection)
    body += b"" if serial is None else struct.pack("<I", serial)
    return send(MessageType.CLIPBOARD_GRAB, body + struct.pack(f"<{len(types)}I", *types))


def request(kind: int, selection: int | None = 0) -> bytes:
    prefix = b"" if selection is None else struct.pack("<B3x", selection)
    return send(MessageType.CLIPBOARD_REQUEST, prefix + struct.pack("<I", kind))


def data(kind: int, value: bytes, selection: int | None = 0) -> bytes:
    prefix = b"" if selection is None else struct.pack("<B3x", selection)
    return send(MessageType.CLIPBOARD, prefix + struct.pack("<I", kind) + value)


def release(selection: int | None = 0) -> bytes:
    prefix = b"" if selection is None else struct.pack("<B3x", selection)
    return send(MessageType.CLIPBOARD_RELEASE, prefix)


def sent(stream: bytes) -> list[tuple[int, bytes]]:
    """(type, body) of each message the host wrote, every chunk within the guest's limit."""
    pos = 0
    while pos < len(stream):
        _, size = struct.unpack_from("<II", stream, pos)
        assert size <= wire.MAX_CHUNK_DATA
        pos += 8 + size
    return [(m.type, m.data) for m in wire.Decoder().feed(stream)]


def session_with(
    guest: frozenset[int] = VDAGENT, max_clipboard: int = wire.DEFAULT_MAX_CLIPBOARD
) -> AgentSession:
    session = AgentSession(max_clipboard=max_clipboard)
    session.connected()
    session.receive(caps(guest, request=False))
    return session


# -- capabilities --------------------------------------------------------------------------


# MONITORS_CONFIG, REPLY, BY_DEMAND, SELECTION, CONFIG_POSITION, NO_RELEASE, GRAB_SERIAL
HOST_WORD = (1 << 1) | (1 << 2) | (1 << 5) | (1 << 6) | (1 << 12) | (1 << 16) | (1 << 17)


def test_connected_announces_the_host_capabilities_and_asks_for_the_guests() -> None:
    out = sent(AgentSession().connected())
    assert out == [(MessageType.ANNOUNCE_CAPABILITIES, struct.pack("<II", 1, HOST_WORD))]


def test_a_guest_that_asks_gets_the_host_capabilities_and_the_clipboard_limit() -> None:
    session = AgentSession(max_clipboard=5000)
    got = session.receive(caps(VDAGENT, request=True))
    assert got.events == (GuestCapabilities(VDAGENT, request=True),)
    assert sent(got.reply) == [
        (MessageType.ANNOUNCE_CAPABILITIES, struct.pack("<II", 0, HOST_WORD)),  # no request
        (MessageType.MAX_CLIPBOARD, struct.pack("<i", 5000)),
    ]
    assert session.guest_caps == VDAGENT


def test_a_guest_answering_the_host_gets_no_second_announcement() -> None:
    session = AgentSession()
    session.connected()
    got = session.receive(caps(OLD, request=False))
    assert got.events == (GuestCapabilities(OLD, request=False),)
    assert got.reply == b""  # OLD has no MAX_CLIPBOARD: not told the limit
    assert session.both_have(Cap.CLIPBOARD_BY_DEMAND)
    assert not session.both_have(Cap.CLIPBOARD_SELECTION)


def test_a_cap_counts_only_when_both_sides_have_it() -> None:
    session = AgentSession(capabilities=[Cap.CLIPBOARD_BY_DEMAND])
    session.connected()
    session.receive(caps(VDAGENT, request=False))
    assert session.guest_has(Cap.CLIPBOARD_SELECTION)
    assert not session.both_have(Cap.CLIPBOARD_SELECTION)
    # The host did not announce the prefix, so neither side writes one.
    assert sent(session.offer(CLIPBOARD, {TEXT: b"x"})) == [
        (MessageType.CLIPBOARD_GRAB, struct.pack("<I", TEXT))
    ]


def test_clipboard_messages_before_the_guests_capabilities_are_ignored() -> None:
    session = AgentSession()
    session.connected()
    got = session.receive(grab([TEXT]))
    assert got.events == (
        Ignored(MessageType.CLIPBOARD_GRAB, "clipboard message before the guest's capabilities"),
    )
    assert session.selection(CLIPBOARD).owner is Owner.NONE


# -- selection prefix ----------------------------------------------------------------------


def test_with_selection_caps_each_clipboard_message_names_its_selection() -> None:
    session = session_with(VDAGENT)
    assert sent(session.offer(PRIMARY, {TEXT: b"p"})) == [
        (MessageType.CLIPBOARD_GRAB, struct.pack("<B3xII", 1, 0, TEXT))
    ]
    got = session.receive(grab([PNG, TEXT], selection=0, serial=0))
    assert got.events == (GuestGrabbed(CLIPBOARD, (PNG, TEXT)),)
    assert sent(session.request(CLIPBOARD, PNG)) == [
        (MessageType.CLIPBOARD_REQUEST, struct.pack("<B3xI", 0, PNG))
    ]
    assert sent(session.release(PRIMARY)) == [(MessageType.CLIPBOARD_RELEASE, b"\x01\0\0\0")]


def test_without_selection_caps_there_is_no_prefix_and_only_clipboard() -> None:
    session = session_with(OLD)
    assert sent(session.offer(CLIPBOARD, {TEXT: b"c"})) == [
        (MessageType.CLIPBOARD_GRAB, struct.pack("<I", TEXT))  # no prefix, no serial
    ]
    assert session.offer(PRIMARY, {TEXT: b"p"}) == b""  # the guest cannot hear of PRIMARY
    assert session.selection(PRIMARY) == agent.SelectionState(Owner.HOST, (TEXT,))
    got = session.receive(request(TEXT, selection=None))
    assert sent(got.reply) == [(MessageType.CLIPBOARD, struct.pack("<I", TEXT) + b"c")]
    assert session.release(PRIMARY) == b""  # never announced: nothing to take back
    got = session.receive(grab([TEXT], selection=None, serial=None))
    assert got.events == (GuestGrabbed(CLIPBOARD, (TEXT,)),)
    assert session.selection(CLIPBOARD) == agent.SelectionState(Owner.GUEST, (TEXT,))


def test_the_secondary_selection_is_not_kept() -> None:
    session = session_with(VDAGENT)
    got = session.receive(grab([TEXT], selection=Selection.SECONDARY, serial=0))
    assert got.events == (
        Ignored(MessageType.CLIPBOARD_GRAB, "selection 2 is not kept by this host"),
    )
    with pytest.raises(wire.SpiceProtocolError) as caught:
        session.offer(Selection.SECONDARY, {TEXT: b"s"})
    assert caught.value.hint == "use Selection.CLIPBOARD or Selection.PRIMARY"


# -- grab serials --------------------------------------------------------------------------


def _serials(stream: bytes) -> list[int]:
    return [struct.unpack_from("<I", body, 4)[0] for kind, body in sent(stream)
            if kind == MessageType.CLIPBOARD_GRAB]  # fmt: skip


def test_host_grabs_count_up_per_selection() -> None:
    session = session_with(VDAGENT)
    assert _serials(session.offer(CLIPBOARD, {TEXT: b"1"})) == [0]
    assert _serials(session.offer(CLIPBOARD, {TEXT: b"2"})) == [1]
    assert _serials(session.offer(PRIMARY, {TEXT: b"3"})) == [0]
    assert _serials(session.offer(CLIPBOARD, {TEXT: b"4"})) == [2]


def test_a_guest_grab_is_taken_only_with_the_expected_serial() -> None:
    session = session_with(VDAGENT)
    assert session.receive(grab([TEXT], serial=0)).events == (GuestGrabbed(0, (TEXT,)),)
    assert session.receive(grab([PNG], serial=1)).events == (GuestGrabbed(0, (PNG,)),)
    stale = session.receive(grab([TEXT], serial=1)).events
    assert stale == (Ignored(MessageType.CLIPBOARD_GRAB, "stale grab: serial 1, expected 2"),)
    ahead = session.receive(grab([TEXT], serial=5)).events  # spice-gtk wants it exact
    assert ahead == (Ignored(MessageType.CLIPBOARD_GRAB, "stale grab: serial 5, expected 2"),)
    assert session.selection(CLIPBOARD) == agent.SelectionState(Owner.GUEST, (PNG,))
    # The host's next grab continues from the guest's count.
    assert _serials(session.offer(CLIPBOARD, {TEXT: b"h"})) == [2]


def test_when_both_grab_with_the_same_serial_the_host_wins() -> None:
    session = session_with(VDAGENT)
    assert _serials(session.offer(CLIPBOARD, {TEXT: b"host"})) == [0]
    # The guest grabbed at the same time, also with serial 0.
    got = session.receive(grab([TEXT], serial=0))
    assert got.events == (Ignored(MessageType.CLIPBOARD_GRAB, "stale grab: serial 0, expected 1"),)
    assert session.selection(CLIPBOARD).owner is Owner.HOST
    served = session.receive(request(TEXT))
    assert sent(served.reply) == [(MessageType.CLIPBOARD, struct.pack("<B3xI", 0, TEXT) + b"host")]


def test_without_serial_caps_grabs_carry_none() -> None:
    session = session_with(VDAGENT - {Cap.CLIPBOARD_GRAB_SERIAL})
    assert sent(session.offer(CLIPBOARD, {TEXT: b"x", PNG: b"p"})) == [
        (MessageType.CLIPBOARD_GRAB, struct.pack("<B3xII", 0, TEXT, PNG))
    ]
    got = session.receive(grab([PNG], serial=None) + grab([TEXT], serial=None))
    assert got.events == (GuestGrabbed(0, (PNG,)), GuestGrabbed(0, (TEXT,)))


def test_serials_restart_at_zero_when_a_side_asks_for_capabilities() -> None:
    session = session_with(VDAGENT)
    session.offer(CLIPBOARD, {TEXT: b"a"})
    session.offer(CLIPBOARD, {TEXT: b"b"})
    session.connected()
    got = session.receive(caps(VDAGENT, request=False))
    assert _serials(got.reply) == [0]  # the offer, announced afresh
    # The guest agent restarted (it asks): both counts start over, and the host's offer is
    # announced again with serial 0, winning over a guest grab sent meanwhile with 0 too.
    got = session.receive(caps(VDAGENT, request=True) + grab([PNG], serial=0))
    assert _serials(got.reply) == [0]
    assert [type(e) for e in got.events] == [GuestCapabilities, Ignored]
    assert session.receive(grab([PNG], serial=1)).events == (GuestGrabbed(0, (PNG,)),)
    # With no offer held, the restarted agent's first grab (serial 0) is taken.
    fresh = session_with(VDAGENT)
    fresh.receive(grab([TEXT], serial=0) + grab([TEXT], serial=1))
    got = fresh.receive(caps(VDAGENT, request=True) + grab([TEXT], serial=0))
    assert [type(e) for e in got.events] == [GuestCapabilities, GuestGrabbed]


# -- answering requests from an offer ------------------------------------------------------


def test_a_guest_request_is_served_from_the_offer() -> None:
    session = session_with(VDAGENT)
    session.offer(CLIPBOARD, {TEXT: b"hello", PNG: b"\x89PNG"})
    got = session.receive(request(PNG) + request(TEXT))
    assert got.events == (GuestRequested(0, PNG, served=True), GuestRequested(0, TEXT, served=True))
    assert sent(got.reply) == [
        (MessageType.CLIPBOARD, struct.pack("<B3xI", 0, PNG) + b"\x89PNG"),
        (MessageType.CLIPBOARD, struct.pack("<B3xI", 0, TEXT) + b"hello"),
    ]


def test_a_request_the_host_cannot_serve_gets_an_empty_answer() -> None:
    session = session_with(VDAGENT)
    session.offer(CLIPBOARD, {TEXT: b"hello"})
    got = session.receive(request(PNG) + request(TEXT, selection=1))
    assert got.events == (
        GuestRequested(0, PNG, served=False),
        GuestRequested(1, TEXT, served=False),
    )
    assert sent(got.reply) == [
        (MessageType.CLIPBOARD, struct.pack("<B3xI", 0, PNG)),
        (MessageType.CLIPBOARD, struct.pack("<B3xI", 1, TEXT)),
    ]


def test_a_guest_grab_takes_the_selection_from_the_host() -> None:
    session = session_with(VDAGENT)
    session.offer(CLIPBOARD, {TEXT: b"mine"})
    session.receive(grab([PNG], serial=1))
    assert session.selection(CLIPBOARD) == agent.SelectionState(Owner.GUEST, (PNG,))
    got = session.receive(request(TEXT))
    assert got.events == (GuestRequested(0, TEXT, served=False),)


def test_a_large_offer_is_served_in_guest_sized_chunks() -> None:
    session = session_with(VDAGENT)
    image = bytes(range(256)) * 4096  # 1 MiB
    session.offer(CLIPBOARD, {PNG: image})
    [(kind, body)] = sent(session.receive(request(PNG)).reply)
    assert (kind, body[:8], body[8:] == image) == (MessageType.CLIPBOARD, b"\0\0\0\0\2\0\0\0", True)


# -- host requests -------------------------------------------------------------------------


def test_the_host_asks_for_what_the_guest_offers() -> None:
    session = session_with(VDAGENT)
    with pytest.raises(agent.AgentNotReady) as caught:
        session.request(CLIPBOARD, TEXT)
    assert isinstance(caught.value, Conflict) and caught.value.hint
    session.receive(grab([TEXT], serial=0))
    with pytest.raises(agent.AgentNotReady):
        session.request(CLIPBOARD, PNG)
    session.request(CLIPBOARD, TEXT)
    got = session.receive(data(TEXT, b"from guest"))
    assert got.events == (ClipboardData(0, TEXT, b"from guest"),)
    again = session.receive(data(TEXT, b"unasked"))
    assert again.events == (Ignored(MessageType.CLIPBOARD, "clipboard data nobody asked for"),)


def test_the_guests_data_may_come_in_any_split() -> None:
    session = session_with(VDAGENT)
    session.receive(grab([TEXT], serial=0))
    session.request(CLIPBOARD, TEXT)
    stream = data(TEXT, b"x" * 5000) + release()
    events = [
        e for i in range(0, len(stream), 3) for e in session.receive(stream[i : i + 3]).events
    ]
    assert events == [
        ClipboardData(0, TEXT, b"x" * 5000),
        GuestReleased(0, regrab_may_follow=False),
    ]


# -- line endings --------------------------------------------------------------------------


def test_crlf_guests_get_crlf_text_and_send_lf_text_back() -> None:
    session = session_with(WINDOWS)
    assert session.guest_crlf
    session.offer(CLIPBOARD, {TEXT: b"a\nb\r\nc\n", PNG: b"\n\n"})
    got = session.receive(request(TEXT) + request(PNG))
    assert sent(got.reply) == [
        (MessageType.CLIPBOARD, struct.pack("<B3xI", 0, TEXT) + b"a\r\nb\r\nc\r\n"),
        (MessageType.CLIPBOARD, struct.pack("<B3xI", 0, PNG) + b"\n\n"),  # not text: as is
    ]
    session.receive(grab([TEXT], serial=1))
    session.request(CLIPBOARD, TEXT)
    got = session.receive(data(TEXT, b"x\r\ny\r\n\0"))
    assert got.events == (ClipboardData(0, TEXT, b"x\ny\n"),)


def test_lf_guests_get_text_as_it_is() -> None:
    session = session_with(VDAGENT)
    assert not session.guest_crlf
    session.offer(CLIPBOARD, {TEXT: b"a\nb\r\n"})
    assert sent(session.receive(request(TEXT)).reply)[0][1][8:] == b"a\nb\r\n"
    session.receive(grab([TEXT], serial=1))
    session.request(CLIPBOARD, TEXT)
    assert session.receive(data(TEXT, b"x\r\n")).events == (ClipboardData(0, TEXT, b"x\r\n"),)


def test_the_line_end_helpers() -> None:
    assert agent.to_crlf(b"a\nb\r\n\n") == b"a\r\nb\r\n\r\n"
    assert agent.from_crlf(b"a\r\nb\r\r\n\n") == b"a\nb\r\n\n"


# -- the clipboard limit -------------------------------------------------------------------


def test_the_host_refuses_to_offer_more_than_the_limit() -> None:
    session = session_with(VDAGENT, max_clipboard=10)
    session.offer(CLIPBOARD, {TEXT: b"x" * 10})
    with pytest.raises(agent.ClipboardTooLarge, match="11 bytes is over the 10-byte limit"):
        session.offer(CLIPBOARD, {TEXT: b"x" * 11})


def test_text_that_crlf_grows_past_the_limit_is_not_served() -> None:
    session = session_with(WINDOWS, max_clipboard=10)
    session.offer(CLIPBOARD, {TEXT: b"\n" * 6})
    got = session.receive(request(TEXT))
    assert got.events == (GuestRequested(0, TEXT, served=False),)
    assert sent(got.reply) == [(MessageType.CLIPBOARD, struct.pack("<B3xI", 0, TEXT))]


def test_guest_data_over_the_limit_is_dropped_and_far_over_it_refused() -> None:
    session = session_with(VDAGENT, max_clipboard=10)
    session.receive(grab([TEXT], serial=0))
    session.request(CLIPBOARD, TEXT)
    got = session.receive(data(TEXT, b"y" * 11))
    assert got.events == (
        Ignored(MessageType.CLIPBOARD, "11 bytes of clipboard data, over the limit"),
    )
    session.request(CLIPBOARD, TEXT)
    # Past the headroom over the limit the framing gives up before buffering it.
    header_only = struct.pack("<IIIIQI", 1, 100_000, 1, MessageType.CLIPBOARD, 0, 99_980)
    with pytest.raises(wire.MessageTooLarge):
        session.receive(header_only)


def test_the_guest_is_told_the_limit_only_when_it_understands_it() -> None:
    session = AgentSession(max_clipboard=1234)
    session.connected()
    assert sent(session.receive(caps(VDAGENT, request=False)).reply) == [
        (MessageType.MAX_CLIPBOARD, struct.pack("<i", 1234))
    ]
    session.connected()
    assert session.receive(caps(VDAGENT - {Cap.MAX_CLIPBOARD}, request=False)).reply == b""


# -- release -------------------------------------------------------------------------------


def test_guest_releases() -> None:
    session = session_with(VDAGENT)
    assert session.receive(release()).events == (
        Ignored(MessageType.CLIPBOARD_RELEASE, "the guest did not own it"),
    )
    session.receive(grab([TEXT], serial=0))
    assert session.receive(release()).events == (GuestReleased(0, regrab_may_follow=False),)
    assert session.selection(CLIPBOARD) == agent.SelectionState(Owner.NONE, ())
    # A guest without NO_RELEASE_ON_REGRAB may release just before grabbing again.
    session = session_with(VDAGENT - {Cap.CLIPBOARD_NO_RELEASE_ON_REGRAB})
    session.receive(grab([TEXT], serial=0))
    assert session.receive(release()).events == (GuestReleased(0, regrab_may_follow=True),)


def test_a_new_offer_is_a_grab_never_a_release_first() -> None:
    session = session_with(VDAGENT)
    session.offer(CLIPBOARD, {TEXT: b"1"})
    assert [k for k, _ in sent(session.offer(CLIPBOARD, {TEXT: b"2"}))] == [
        MessageType.CLIPBOARD_GRAB
    ]
    assert sent(session.release(CLIPBOARD)) == [(MessageType.CLIPBOARD_RELEASE, b"\0\0\0\0")]
    assert session.release(CLIPBOARD) == b""
    with pytest.raises(wire.SpiceProtocolError, match="at least one clipboard type"):
        session.offer(CLIPBOARD, {})


# -- monitors ------------------------------------------------------------------------------


def test_monitors_are_sent_once_the_guest_can_take_them() -> None:
    session = AgentSession()
    session.connected()
    assert session.set_monitors([(1920, 1080), (1280, 720)]) == b""
    got = session.receive(caps(VDAGENT, request=False))
    body = struct.pack("<IIIIIiiIIIii", 2, 1, 1080, 1920, 32, 0, 0, 720, 1280, 32, 1920, 0)
    assert sent(got.reply) == [
        (MessageType.MAX_CLIPBOARD, struct.pack("<i", wire.DEFAULT_MAX_CLIPBOARD)),
        (MessageType.MONITORS_CONFIG, body),
    ]
    assert sent(session.set_monitors([(800, 600)])) == [
        (MessageType.MONITORS_CONFIG, struct.pack("<IIIIIii", 1, 1, 600, 800, 32, 0, 0))
    ]
    ack = session.receive(send(MessageType.REPLY, struct.pack("<II", 2, wire.REPLY_SUCCESS)))
    assert ack.events == (GuestReply(MessageType.MONITORS_CONFIG, ok=True),)


def test_monitors_need_the_guests_monitor_caps() -> None:
    session = session_with(frozenset({Cap.CLIPBOARD_BY_DEMAND}))
    assert session.set_monitors([(1024, 768)]) == b""
    with pytest.raises(agent.AgentNotReady, match="disabled"):
        session.set_monitors([(1024, 768), (0, 0)])
    sparse = session_with(VDAGENT)
    [(_, body)] = sent(sparse.set_monitors([(1024, 768), (0, 0)]))
    assert body[8 + 20 :] == struct.pack("<IIIii", 0, 0, 32, 1024, 0)


# -- robustness and reset ------------------------------------------------------------------


def test_a_malformed_body_is_ignored_and_the_session_goes_on() -> None:
    session = session_with(VDAGENT)
    got = session.receive(
        send(MessageType.CLIPBOARD_GRAB, b"\0\0\0\0\1\0") + grab([TEXT], serial=0)
    )
    assert isinstance(got.events[0], Ignored) and "too short" in got.events[0].reason
    assert got.events[1:] == (GuestGrabbed(0, (TEXT,)),)
    other = session.receive(send(MessageType.FILE_XFER_STATUS, b"\0" * 8))
    assert other.events == (
        Ignored(MessageType.FILE_XFER_STATUS, "a message type this host does not handle"),
    )


def test_reset_forgets_the_guest_and_keeps_the_host_offer() -> None:
    session = session_with(VDAGENT)
    session.receive(grab([PNG], serial=0))
    session.offer(PRIMARY, {TEXT: b"kept"})
    session.offer(PRIMARY, {TEXT: b"kept"})
    session.set_monitors([(640, 480)])
    session.receive(caps(VDAGENT)[:30])  # half a message, lost with the old agent
    session.reset()
    assert session.guest_caps is None
    assert session.selection(CLIPBOARD) == agent.SelectionState(Owner.NONE, ())
    assert session.selection(PRIMARY) == agent.SelectionState(Owner.HOST, (TEXT,))
    assert session.offer(PRIMARY, {TEXT: b"kept"}) == b""  # nobody to tell yet
    # The new agent announces itself: the host answers, then re-announces what it holds.
    got = session.receive(caps(VDAGENT, request=True))
    assert [k for k, _ in sent(got.reply)] == [
        MessageType.ANNOUNCE_CAPABILITIES,
        MessageType.MAX_CLIPBOARD,
        MessageType.CLIPBOARD_GRAB,
        MessageType.MONITORS_CONFIG,
    ]
    assert sent(got.reply)[2][1] == struct.pack("<B3xII", 1, 0, TEXT)  # PRIMARY, serial 0
    served = session.receive(request(TEXT, selection=1))
    assert sent(served.reply)[0][1][8:] == b"kept"


def test_a_restarting_agent_mid_stream_loses_nothing_after_its_announcement() -> None:
    session = session_with(VDAGENT)
    session.offer(CLIPBOARD, {TEXT: b"t"})
    got = session.receive(caps(VDAGENT, request=True) + request(TEXT))
    assert [type(e) for e in got.events] == [GuestCapabilities, GuestRequested]
    assert got.events[1] == GuestRequested(0, TEXT, served=True)


def test_monitor_layouts_are_checked_when_set() -> None:
    session = AgentSession()
    for bad in ([], [(0, 600)], [(-800, 600)], [(1 << 32, 600)]):
        with pytest.raises(wire.SpiceProtocolError):
            session.set_monitors(bad)
    # A disabled output waits for a guest that says it takes one, and only such a guest.
    session.connected()
    assert session.set_monitors([(800, 600), (0, 0)]) == b""
    plain = session.receive(caps(VDAGENT - {Cap.SPARSE_MONITORS_CONFIG}, request=False))
    assert MessageType.MONITORS_CONFIG not in [k for k, _ in sent(plain.reply)]
    session.connected()
    sparse = session.receive(caps(VDAGENT, request=False))
    assert MessageType.MONITORS_CONFIG in [k for k, _ in sent(sparse.reply)]


def test_an_answer_still_arrives_after_the_guest_grabs_again() -> None:
    session = session_with(VDAGENT)
    session.receive(grab([TEXT], serial=0))
    session.request(CLIPBOARD, TEXT)
    got = session.receive(grab([TEXT], serial=1) + data(TEXT, b"old"))
    assert got.events == (GuestGrabbed(0, (TEXT,)), ClipboardData(0, TEXT, b"old"))
