"""A guest is untrusted: whatever its agents write on their sockets, the host side decodes it
or refuses it with its documented error, keeps its memory bounded, and the supervisor goes on
serving. Property tests (hypothesis, derandomized) feed the SPICE agent's codec and state
machine and qemu-ga's client anything; crafted cases pin the nastiest headers; the real
Supervisor (test_protocol_agents' ``served`` rig) is then fed garbage by its fake agents."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import random
import struct
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit import test_protocol_agents as agents_rig
from tests.unit.test_guest_agent import FakeAgent
from tests.unit.test_protocol import run
from tests.unit.test_protocol_agents import (
    CLIPBOARD,
    PRIMARY,
    TEXT,
    TEXT_MIME,
    VDAGENT,
    WAIT,
    FakeQemuGA,
    GuestSession,
    b64,
    served,
    unb64,
    until,
)
from vmdesk.core.errors import GuestAgentError, GuestTimeout, VMDeskError
from vmdesk.integration import guest_agent as ga
from vmdesk.integration import spice_channel
from vmdesk.integration import spice_wire as wire
from vmdesk.integration.guest_agent import GuestAgent
from vmdesk.integration.spice_agent import (
    AgentNotReady,
    AgentSession,
    ClipboardData,
    GuestCapabilities,
    GuestGrabbed,
    GuestReleased,
    GuestRequested,
    Ignored,
    Owner,
    SelectionState,
    to_crlf,
)
from vmdesk.integration.spice_wire import Cap, ClipboardType, MessageType, Selection

PNG = ClipboardType.IMAGE_PNG
U32 = 2**32

# Derandomized: the same examples on every run, so a failure here is a failure everywhere.
FAST = settings(derandomize=True, max_examples=1000, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
MEDIUM = settings(FAST, max_examples=400)
SLOW = settings(FAST, max_examples=60)  # each example talks to a socket


def chunk(size: int, port: int = wire.Port.CLIENT) -> bytes:
    return wire.CHUNK_HEADER.pack(port, size)


def header(kind: int, size: int, protocol: int = wire.PROTOCOL) -> bytes:
    return wire.MESSAGE_HEADER.pack(protocol, kind, 0, size)


def one_chunk(kind: int, body: bytes, port: int = wire.Port.CLIENT) -> bytes:
    """A whole message in one chunk, as spice-vdagent writes it."""
    return chunk(wire.MESSAGE_HEADER.size + len(body), port) + header(kind, len(body)) + body


def buffered(decoder: wire.Decoder) -> int:
    """The bytes a decoder holds for messages still arriving (its memory)."""
    return sum(len(b) for b in decoder._streams.values()) + len(decoder._head)


def feed_all(decoder: wire.Decoder, pieces: list[bytes]) -> list[wire.AgentMessage]:
    """Feed ``pieces``; a SpiceProtocolError ends it (and then sticks until a reset)."""
    out: list[wire.AgentMessage] = []
    for piece in pieces:
        try:
            out += decoder.feed(piece)
        except wire.SpiceProtocolError as exc:
            with pytest.raises(type(exc)):
                decoder.feed(b"\x01\x00\x00\x00")
            break
        finally:
            assert buffered(decoder) <= 2 * (decoder.max_message_size + 2 * 20)
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# -- the wire: arbitrary bytes ---------------------------------------------------------------

# Bytes that look like the protocol often enough to get past the first header: chunk
# headers with near-valid ports and sizes, message headers with near-valid protocols and
# sizes, and raw filler, in any order.
_sizes = st.one_of(st.integers(0, 64), st.integers(0, 400), st.sampled_from([2**31, U32 - 1]))
_pieces = st.one_of(
    st.builds(chunk, _sizes, st.sampled_from([0, 1, 1, 1, 2, 3, U32 - 1])),
    st.builds(header, st.integers(0, 20), _sizes, st.sampled_from([0, 1, 1, 1, 2, U32 - 1])),
    st.binary(max_size=64),
)
protocolish = st.lists(_pieces, max_size=12).map(b"".join)


@FAST
@given(st.one_of(st.binary(max_size=2048), protocolish), st.lists(st.integers(0, 4096)))
def test_the_decoder_takes_any_bytes_in_any_split(data: bytes, cuts: list[int]) -> None:
    decoder = wire.Decoder(max_message_size=256)
    for message in feed_all(decoder, split(data, cuts)):
        assert message.port in (wire.Port.CLIENT, wire.Port.SERVER)
        assert len(message.data) <= 256
    # Whatever came before, a reset stream decodes again (what reopening the port does).
    decoder.reset()
    again = decoder.feed(wire.encode_clipboard_release(selection=0))
    assert [(m.type, m.data) for m in again] == [(MessageType.CLIPBOARD_RELEASE, b"\0" * 4)]


@MEDIUM
@given(protocolish, st.lists(st.integers(0, 1024)))
def test_split_points_never_change_what_is_decoded(data: bytes, cuts: list[int]) -> None:
    def decode(pieces: list[bytes]) -> tuple[list[wire.AgentMessage], bool]:
        decoder, out = wire.Decoder(max_message_size=256), []
        try:
            for piece in pieces:
                out += decoder.feed(piece)
        except wire.SpiceProtocolError:
            return out, True
        return out, False

    whole, whole_failed = decode([data])
    pieces, pieces_failed = decode(split(data, cuts))
    assert whole_failed == pieces_failed
    if not whole_failed:
        assert pieces == whole


PARSERS: list[tuple[str, Callable[[bytes], object]]] = [
    ("capabilities", wire.parse_capabilities),
    ("reply", wire.parse_reply),
    ("max_clipboard", wire.parse_max_clipboard),
    ("monitors_config", wire.parse_monitors_config),
]
for _p in (False, True):
    PARSERS += [
        (f"request {_p}", functools.partial(wire.parse_clipboard_request, selection=_p)),
        (f"clipboard {_p}", functools.partial(wire.parse_clipboard, selection=_p)),
        (f"release {_p}", functools.partial(wire.parse_clipboard_release, selection=_p)),
    ]  # fmt: skip
    PARSERS += [
        (f"grab {_p} {n}", functools.partial(wire.parse_clipboard_grab, selection=_p, serial=n))
        for n in (False, True)
    ]  # fmt: skip


@MEDIUM
@given(st.sampled_from(PARSERS), st.binary(max_size=600))
def test_every_body_parser_parses_or_refuses_with_its_error(
    parser: tuple[str, Callable[[bytes], object]], data: bytes
) -> None:
    try:
        parser[1](data)
    except wire.SpiceProtocolError as exc:
        assert exc.hint  # says what to make of it


# -- the wire: crafted headers ---------------------------------------------------------------


def test_a_chunk_claiming_4_gib_is_refused_from_its_header_alone() -> None:
    decoder = wire.Decoder()
    with pytest.raises(wire.MessageTooLarge, match="4294967295 bytes"):
        decoder.feed(chunk(U32 - 1))
    assert buffered(decoder) == 0


@pytest.mark.parametrize("max_clipboard", [1000, spice_channel.MAX_CLIPBOARD])
def test_a_message_claiming_2_gib_is_refused_before_its_data(max_clipboard: int) -> None:
    """The supervisor's session (SpiceChannel's MAX_CLIPBOARD) refuses a clipboard claiming
    2 GiB from its 28 bytes of headers: nothing of it is waited for, nothing buffered."""
    session = AgentSession(max_clipboard=max_clipboard)
    session.connected()
    tracemalloc.start()
    try:
        with pytest.raises(wire.MessageTooLarge, match=f"{2**31} bytes is over"):
            session.receive(chunk(4096) + header(MessageType.CLIPBOARD, 2**31))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert buffered(session._decoder) <= 4096
    # Just over the limit's headroom: refused too; at the limit, its header is waited on.
    over = session._decoder.max_message_size + 1
    assert session._decoder.max_message_size == max_clipboard + 64 * 1024
    session.connected()
    with pytest.raises(wire.MessageTooLarge):
        session.receive(chunk(over + 20) + header(MessageType.CLIPBOARD, over))


def test_a_message_larger_than_its_chunk_waits_for_the_next_chunks() -> None:
    body = bytes(range(100))
    raw = header(MessageType.CLIPBOARD, len(body)) + body
    decoder = wire.Decoder()
    assert decoder.feed(chunk(30) + raw[:30]) == []
    assert decoder.feed(chunk(60, wire.Port.SERVER) + header(99, 40) + b"s" * 40) == [
        wire.AgentMessage(wire.Port.SERVER, 99, 0, b"s" * 40)  # another port goes on meanwhile
    ]
    got = decoder.feed(chunk(len(raw) - 30) + raw[30:])
    assert got == [wire.AgentMessage(wire.Port.CLIENT, MessageType.CLIPBOARD, 0, body)]


def test_truncated_headers_wait_and_zero_length_messages_decode() -> None:
    decoder = wire.Decoder()
    assert decoder.feed(chunk(20)[:7]) == []  # a chunk header cut short
    assert decoder.feed(chunk(20)[7:] + header(MessageType.CLIPBOARD_RELEASE, 0)[:19]) == []
    assert decoder.feed(header(MessageType.CLIPBOARD_RELEASE, 0)[19:]) == [
        wire.AgentMessage(wire.Port.CLIENT, MessageType.CLIPBOARD_RELEASE, 0, b"")
    ]
    assert decoder.feed(chunk(0) * 1000) == []  # empty chunks: no loop, no message


@pytest.mark.parametrize("protocol", [0, 2, U32 - 1])
def test_a_protocol_other_than_1_breaks_the_stream(protocol: int) -> None:
    with pytest.raises(wire.SpiceProtocolError, match=f"protocol {protocol}, not 1"):
        wire.Decoder().feed(chunk(20) + header(MessageType.CLIPBOARD, 0, protocol=protocol))


def test_hostile_bodies_are_refused_quickly_and_small() -> None:
    # A selection prefix and then nothing: no type, no data.
    with pytest.raises(wire.SpiceProtocolError, match="too short"):
        wire.parse_clipboard(b"\0\0\0\0", selection=True)
    # A MONITORS_CONFIG counting 4 billion monitors in 8 bytes.
    with pytest.raises(wire.SpiceProtocolError, match="too short"):
        wire.parse_monitors_config(struct.pack("<II", U32 - 1, 0))
    # A 4 MiB announce with every bit set, and a grab of a million types: what a hostile
    # guest can put in one message under the clipboard limit (64 MiB: same, 16x over).
    announce, types = b"\x01\0\0\0" + b"\xff" * (4 << 20), b"\x01\0\0\0" * (1 << 20)
    tracemalloc.start()
    started = time.monotonic()
    try:
        caps = wire.parse_capabilities(announce)
        with pytest.raises(wire.SpiceProtocolError, match="types"):
            wire.parse_clipboard_grab(types, selection=False, serial=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 1.0
    assert caps.request and caps.caps == frozenset(range(32 * wire.MAX_CAPS_WORDS))
    assert peak < 1 << 20  # neither a 32-million-bit set nor a million-type tuple
    most = wire.parse_clipboard_grab(b"\x01\0\0\0" * wire.MAX_GRAB_TYPES, selection=False,
                                     serial=False)  # fmt: skip
    assert most.types == (TEXT,) * wire.MAX_GRAB_TYPES


def test_unknown_message_types_are_decoded_and_then_ignored() -> None:
    session = AgentSession()
    session.connected()
    got = session.receive(one_chunk(999, b"whatever") + one_chunk(0, b""))
    assert [type(e) for e in got.events] == [Ignored, Ignored] and got.reply == b""


# -- the agent's state machine ---------------------------------------------------------------

SELECTIONS = st.sampled_from([0, 0, 0, 1, 1, 2, 255])
KINDS = st.sampled_from([TEXT, TEXT, PNG, 0, 7, U32 - 1])
OLD = frozenset({Cap.MONITORS_CONFIG, Cap.REPLY, Cap.CLIPBOARD_BY_DEMAND, Cap.GUEST_LINEEND_LF})
WINDOWS = (VDAGENT - {Cap.GUEST_LINEEND_LF}) | {Cap.GUEST_LINEEND_CRLF}
_some_caps = st.sets(st.sampled_from(list(Cap)))
GUEST_CAPS = st.one_of(
    st.sampled_from([VDAGENT, VDAGENT, WINDOWS, OLD]),
    st.sampled_from([VDAGENT, VDAGENT, WINDOWS, OLD]),
    _some_caps.map(lambda less: VDAGENT - less),
    _some_caps.map(frozenset),
)

# One step: something the guest sends (built from what was negotiated when it is sent,
# with the wrong prefix now and then) or something the host does.
_prefix = st.sampled_from(["negotiated"] * 4 + ["with", "without"])
_serial = st.one_of(*[st.just("next")] * 4, st.just("previous"), st.integers(0, U32 - 1))
_STEP: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "announce": st.tuples(st.just("announce"), GUEST_CAPS, st.booleans()),
    "grab": st.tuples(
        st.just("grab"), SELECTIONS, _serial, st.lists(KINDS, min_size=1, max_size=4), _prefix
    ),
    "request": st.tuples(st.just("request"), SELECTIONS, KINDS, _prefix),
    "data": st.tuples(st.just("data"), SELECTIONS, KINDS, st.binary(max_size=40), _prefix),
    "release": st.tuples(st.just("release"), SELECTIONS, _prefix),
    "answer": st.tuples(st.just("answer"), st.integers(0, 7), st.binary(max_size=72)),
    "other": st.tuples(st.just("other"), st.integers(0, 20), st.binary(max_size=24)),
    "offer": st.tuples(st.just("offer"), st.sampled_from([0, 1]), st.binary(max_size=30)),
    "host_release": st.tuples(st.just("host_release"), st.sampled_from([0, 1])),
    "ask": st.tuples(st.just("ask"), st.sampled_from([0, 1]), KINDS, st.integers(0, 4)),
    "monitors": st.tuples(st.just("monitors"), st.integers(1, 4000), st.integers(1, 4000)),
    "reconnect": st.tuples(st.just("reconnect"), st.booleans()),
}
# How often each comes: the clipboard's moves often, the resets that undo them rarely.
_WEIGHTS = {"grab": 6, "ask": 5, "answer": 4, "request": 4, "offer": 3, "release": 2,
            "data": 2, "host_release": 1, "other": 1, "monitors": 1, "announce": 1,
            "reconnect": 1}  # fmt: skip
STEPS = st.sampled_from([k for k, n in _WEIGHTS.items() for _ in range(n)]).flatmap(
    lambda kind: _STEP[kind]
)  # fmt: skip


class Model:
    """What the host itself did, to hold the session's state against."""

    def __init__(self) -> None:
        self.offers: dict[int, dict[int, bytes]] = {}  # the host's own offers
        self.guest_types: dict[int, tuple[int, ...]] = {}  # the guest's last taken grab
        self.asked: set[tuple[int, int]] = set()
        self.guest_serial: dict[int, int] = {0: 0, 1: 0}  # what a well-behaved guest sends


def _guest_message(session: AgentSession, model: Model, step: tuple[Any, ...]) -> bytes:
    def prefix(how: str, selection: int) -> int | None:
        use = session.both_have(Cap.CLIPBOARD_SELECTION) if how == "negotiated" else how == "with"
        return selection if use else None

    kind = step[0]
    if kind == "announce":
        return wire.encode_announce_capabilities(step[1], request=step[2])
    if kind == "grab":
        _, selection, serial, types, how = step
        number: int | None = None
        if session.both_have(Cap.CLIPBOARD_GRAB_SERIAL):
            count = model.guest_serial.get(selection, 0)
            number = {"next": count, "previous": (count - 1) % U32}.get(serial, serial)
        return wire.encode_clipboard_grab(types, selection=prefix(how, selection), serial=number)
    if kind == "request":
        return wire.encode_clipboard_request(step[2], selection=prefix(step[3], step[1]))
    if kind == "data":
        return wire.encode_clipboard(step[2], step[3], selection=prefix(step[4], step[1]))
    if kind == "release":
        return wire.encode_clipboard_release(selection=prefix(step[2], step[1]))
    if kind == "answer":  # the data the host asked for (or, with nothing asked, unasked data)
        asked = sorted(model.asked) or [(0, TEXT)]
        selection, type_ = asked[step[1] % len(asked)]
        return wire.encode_clipboard(type_, step[2], selection=prefix("negotiated", selection))
    return wire.encode_message(step[1], step[2])


def _host_action(session: AgentSession, model: Model, step: tuple[Any, ...]) -> bytes:
    kind = step[0]
    if kind == "offer":
        offer: dict[int, bytes] = {TEXT: step[2] + b"\n"}
        model.offers[step[1]] = offer
        model.guest_types.pop(step[1], None)
        return session.offer(step[1], offer)
    if kind == "host_release":
        model.offers.pop(step[1], None)
        return session.release(step[1])
    if kind == "ask":  # a type the guest offers (by its index), or any type
        _, selection, type_, index = step
        state = session.selection(selection)
        type_ = state.types[index] if index < len(state.types) else type_
        try:
            out = session.request(selection, type_)
        except AgentNotReady:
            assert state.owner is not Owner.GUEST or type_ not in state.types
            return b""
        model.asked.add((selection, type_))
        return out
    if kind == "monitors":
        return session.set_monitors([(step[1], step[2])])
    # The port closed and opened again (or only closed): the guest is forgotten.
    model.asked.clear()
    model.guest_types.clear()
    model.guest_serial = {0: 0, 1: 0}
    if step[1]:  # the agent that opened the port announces itself
        hello = session.connected()
        got = session.receive(wire.encode_announce_capabilities(VDAGENT, request=True))
        _check_events(session, model, got.events, got.reply)
        return hello
    session.reset()
    return b""


def _check_reply(session: AgentSession, reply: bytes) -> list[wire.AgentMessage]:
    """What the host writes back is well framed, in guest-sized chunks."""
    pos = 0
    while pos < len(reply):
        _, size = wire.CHUNK_HEADER.unpack_from(reply, pos)
        assert size <= wire.MAX_CHUNK_DATA
        pos += wire.CHUNK_HEADER.size + size
    assert pos == len(reply)
    return wire.Decoder().feed(reply)


def _check_events(
    session: AgentSession, model: Model, events: tuple[Any, ...], reply: bytes
) -> None:
    clipboards = [
        wire.parse_clipboard(m.data, selection=session.both_have(Cap.CLIPBOARD_SELECTION))
        for m in _check_reply(session, reply)
        if m.type == MessageType.CLIPBOARD
    ]
    answered = 0
    for event in events:
        note(type(event).__name__ + (f" served={event.served}" if isinstance(
            event, GuestRequested) else ""))  # fmt: skip
        if isinstance(event, GuestCapabilities) and event.request:
            model.asked.clear()
            model.guest_types.clear()
            model.guest_serial = {0: 0, 1: 0}
        elif isinstance(event, GuestGrabbed):
            assert event.selection in (0, 1)
            model.offers.pop(event.selection, None)  # the guest took it from the host
            model.guest_types[event.selection] = event.types
            model.guest_serial[event.selection] = (model.guest_serial[event.selection] + 1) % U32
        elif isinstance(event, GuestReleased):
            assert model.guest_types.pop(event.selection, None) is not None
        elif isinstance(event, ClipboardData):
            # Only what the host asked for reaches it, once.
            assert (event.selection, event.type) in model.asked
            model.asked.discard((event.selection, event.type))
        elif isinstance(event, GuestRequested):
            # Served only from the host's own offer of that very type; else an empty answer.
            offer = model.offers.get(event.selection, {})
            assert event.served == (event.type in offer)
            sent = clipboards[answered]
            answered += 1
            assert (sent.type, sent.selection if session._prefix(0) is not None else 0) == (
                event.type,
                event.selection if session._prefix(0) is not None else 0,
            )
            value = offer.get(event.type, b"")
            if event.type == TEXT and session.guest_crlf:
                value = to_crlf(value)
            assert sent.data == value
        else:
            assert isinstance(event, GuestCapabilities | Ignored) or type(event).__name__ in (
                "GuestReply",
            )
    assert answered == len(clipboards)  # no clipboard data is sent unasked


def note(what: str) -> None:
    """Counted in hypothesis' statistics (--hypothesis-show-statistics): what was reached."""
    hypothesis.event(what)


def _check_state(session: AgentSession, model: Model) -> None:
    for selection in (Selection.CLIPBOARD, Selection.PRIMARY):
        state = session.selection(selection)
        offer = model.offers.get(selection)
        assert (state.owner is Owner.HOST) == (offer is not None)
        if offer is not None:
            assert state.types == tuple(offer)
            assert all(session.host_data(selection, t) == v for t, v in offer.items())
        elif state.owner is Owner.GUEST:
            assert state.types == model.guest_types[selection]
            assert session.host_data(selection, TEXT) == b""
        else:
            assert state.types == () and selection not in model.guest_types
        assert 0 <= session._selections[selection].serial < U32
    assert session._pending <= model.asked


@settings(FAST, max_examples=300)
@given(st.lists(STEPS, min_size=20, max_size=60), GUEST_CAPS.filter(
    lambda caps: Cap.CLIPBOARD_BY_DEMAND in caps))  # fmt: skip
def test_hostile_message_sequences_keep_the_sessions_invariants(
    steps: list[tuple[Any, ...]], first_caps: frozenset[int]
) -> None:
    session, model = AgentSession(max_clipboard=64), Model()
    session.connected()
    _check_events(session, model, *_received(session, wire.encode_announce_capabilities(
        first_caps, request=True)))  # fmt: skip
    for step in steps:
        if step[0] in ("offer", "host_release", "ask", "monitors", "reconnect"):
            try:
                _check_reply(session, _host_action(session, model, step))
            except AgentNotReady:
                assert step[0] == "monitors"
        else:
            # Well framed, well under the limit: the session never raises, it ignores.
            _check_events(session, model, *_received(session, _guest_message(session, model,
                                                                             step)))  # fmt: skip
        _check_state(session, model)


def _received(session: AgentSession, data: bytes) -> tuple[tuple[Any, ...], bytes]:
    got = session.receive(data)
    return got.events, got.reply


@MEDIUM
@given(st.lists(st.one_of(st.binary(max_size=200), protocolish), max_size=6))
def test_garbage_to_the_session_raises_only_its_protocol_error(garbage: list[bytes]) -> None:
    session = AgentSession(max_clipboard=100)
    session.connected()
    session.receive(wire.encode_announce_capabilities(VDAGENT, request=False))
    session.offer(CLIPBOARD, {TEXT: b"host"})
    for data in garbage:
        try:
            session.receive(data)
        except wire.SpiceProtocolError:
            session.connected()  # what SpiceChannel does: start afresh
    assert session.selection(CLIPBOARD) == SelectionState(Owner.HOST, (TEXT,))  # kept
    # After the garbage, a well-behaved agent's hello works.
    session.connected()
    got = session.receive(wire.encode_announce_capabilities(VDAGENT, request=True))
    assert GuestCapabilities(VDAGENT, True) in got.events and session.clipboard_ready


def test_the_hostile_moves_named_in_the_brief_are_ignored() -> None:
    session = AgentSession()
    session.connected()
    session.receive(wire.encode_announce_capabilities(VDAGENT, request=False))
    sel = 0

    def guest(data: bytes) -> tuple[Any, ...]:
        return session.receive(data).events

    # A CLIPBOARD nobody asked for.
    assert guest(wire.encode_clipboard(TEXT, b"unasked", selection=sel)) == (
        Ignored(MessageType.CLIPBOARD, "clipboard data nobody asked for"),
    )
    # A release of what it never grabbed.
    assert guest(wire.encode_clipboard_release(selection=sel)) == (
        Ignored(MessageType.CLIPBOARD_RELEASE, "the guest did not own it"),
    )
    # A request for a selection the host does not own: an empty answer, nothing leaks.
    got = session.receive(wire.encode_clipboard_request(TEXT, selection=PRIMARY))
    assert got.events == (GuestRequested(PRIMARY, TEXT, served=False),)
    assert wire.parse_clipboard(wire.Decoder().feed(got.reply)[0].data, selection=True).data == b""
    # A grab, then serials going backwards: stale, dropped.
    assert guest(wire.encode_clipboard_grab([TEXT], selection=sel, serial=0)) == (
        GuestGrabbed(sel, (TEXT,)),
    )
    assert guest(wire.encode_clipboard_grab([PNG], selection=sel, serial=0)) == (
        Ignored(MessageType.CLIPBOARD_GRAB, "stale grab: serial 0, expected 1"),
    )
    # A grab of a type never announced (and a selection the host does not keep).
    assert guest(wire.encode_clipboard_grab([12345], selection=sel, serial=1)) == (
        GuestGrabbed(sel, (12345,)),
    )
    assert guest(wire.encode_clipboard_grab([TEXT], selection=2, serial=0)) == (
        Ignored(MessageType.CLIPBOARD_GRAB, "selection 2 is not kept by this host"),
    )
    with pytest.raises(AgentNotReady):
        session.request(sel, TEXT)  # not on offer: the host never asks for it


# -- qemu-ga's client ------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = ["pid", "exited", "exitcode", "signal", "out-data", "err-data", "out-truncated",
          "version", "supported_commands", "name", "enabled", "host-name", "ip-addresses",
          "ip-address-type", "ip-address", "prefix", "hardware-address", "pretty-name",
          "id"]  # fmt: skip
# Replies of about the right shape, with the wrong types in the right places.
SHAPED = st.recursive(
    JSON,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELDS), inner | st.just("aGk="), max_size=6)
    ),
    max_leaves=16,
)

CallResult = Callable[[GuestAgent], Awaitable[object]]
CALLS: list[tuple[str, CallResult]] = [
    ("guest-info", lambda a: a.info()),
    ("guest-get-host-name", lambda a: a.host_name()),
    ("guest-get-osinfo", lambda a: a.os_info()),
    ("guest-network-get-interfaces", lambda a: a.addresses()),
    ("guest-fsfreeze-freeze", lambda a: a.freeze()),
    ("guest-fsfreeze-status", lambda a: a.frozen()),
    ("guest-exec", lambda a: a.exec(["true"], timeout=0.05)),
]


@MEDIUM
@given(st.sampled_from(CALLS), st.lists(SHAPED, min_size=1, max_size=4))
def test_any_reply_value_is_a_result_or_a_guest_agent_error_with_a_hint(
    call: tuple[str, CallResult], replies: list[object]
) -> None:
    """What qemu-ga returns is read field by field: anything of the wrong shape (a list for
    an object, a string for a number, a missing key) is a GuestAgentError with a hint."""
    agent = GuestAgent("/nonexistent", timeout=0.05)
    answers = iter(replies)

    async def answer(*_: object, **__: object) -> object:
        return next(answers, {"exited": False})

    agent._call = answer  # type: ignore[method-assign]

    async def main() -> None:
        try:
            await call[1](agent)
        except GuestTimeout as exc:  # an exec that never says it exited
            assert exc.hint
        except GuestAgentError as exc:
            assert exc.hint and "malformed" in exc.message

    asyncio.run(main())


class HostileAgent(FakeAgent):
    """test_guest_agent's fake qemu-ga, whose answers to some commands are raw lines
    (``@ID@`` stands for the request's id) or given return values."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.raw: dict[str, list[bytes]] = {}  # command -> the lines of its next answers
        self.values: dict[str, list[object]] = {}  # command -> its next return values

    async def _answer(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        command = request["execute"]
        if self.raw.get(command):
            line = self.raw[command].pop(0)
            writer.write(line.replace(b"@ID@", json.dumps(request["id"]).encode()))
        elif self.values.get(command):
            self._send(writer, {"return": self.values[command].pop(0), "id": request["id"]})
        else:
            await super()._answer(request, writer)


def hostile(
    tmp_path: Path,
    body: Callable[[HostileAgent, GuestAgent], Awaitable[Any]],
    setup: Callable[[HostileAgent], None],
    timeout: float = 1.0,
) -> Any:
    async def main() -> Any:
        fake = HostileAgent(tmp_path / "qga.sock")
        async with fake:
            setup(fake)
            agent = GuestAgent(fake.path, timeout=timeout)
            try:
                return await body(fake, agent)
            finally:
                await agent.close()

    return asyncio.run(main())


BAD_LINES = [
    b"not json at all\n",
    b"\xff\xfe\x00\n",  # not UTF-8
    b"[1, 2, 3]\n",  # JSON, not an object
    b'"a string"\n',
    b'{"id": @ID@}\n',  # neither return nor error
    b'{"error": "boom", "id": @ID@}\n',  # an error that is no object
    b'{"error": {"class": 5, "desc": []}, "id": @ID@}\n',
    b'{"return": {}, "id": [1]}\n',  # an id that cannot be looked up
    b'{"return": {}, "id": {"a": 1}}\n',
    b'{"return": ' + b"9" * 5000 + b', "id": @ID@}\n',  # past Python's int digits limit
    b"[" * 100_000 + b"\n",  # deeper than the JSON parser recurses
    b'{"return": NaN, "id": @ID@}\n',
]


@pytest.mark.parametrize("line", BAD_LINES, ids=range(len(BAD_LINES)))
def test_a_garbage_reply_line_is_a_guest_agent_error_and_the_next_call_works(
    tmp_path: Path, line: bytes
) -> None:
    def setup(fake: HostileAgent) -> None:
        fake.raw["guest-get-host-name"] = [line]

    async def body(_: HostileAgent, agent: GuestAgent) -> tuple[GuestAgentError, str]:
        await agent.connect(timeout=10)
        with pytest.raises(GuestAgentError) as caught:
            await agent.host_name()
        return caught.value, await agent.host_name()  # connects and syncs again if it must

    error, after = hostile(tmp_path, body, setup, timeout=3.0)
    assert error.hint
    assert after == "guest"


@SLOW
@given(st.lists(st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"") + b"\n"),
                min_size=1, max_size=3))  # fmt: skip
def test_random_reply_lines_are_guest_agent_errors(
    tmp_path_factory: Any, lines: list[bytes]
) -> None:
    path = tmp_path_factory.mktemp("qga")

    def setup(fake: HostileAgent) -> None:
        fake.raw["guest-get-osinfo"] = list(lines)

    async def body(_: HostileAgent, agent: GuestAgent) -> None:
        await agent.connect(timeout=10)  # the set-up, however loaded the machine
        try:
            await agent.os_info()
        except GuestAgentError as exc:
            assert exc.hint

    hostile(path, body, setup, timeout=0.1)


def test_guest_sync_replies_with_the_wrong_id_are_ignored_and_synced_again(
    tmp_path: Path,
) -> None:
    def setup(fake: HostileAgent) -> None:
        fake.values["guest-sync"] = [12345, "12345", None, {"id": 1}]  # then the right one

    async def body(fake: HostileAgent, agent: GuestAgent) -> tuple[str, list[str]]:
        return await agent.host_name(), fake.commands()

    name, commands = hostile(tmp_path, body, setup)
    assert name == "guest" and commands == ["guest-sync"] * 5 + ["guest-get-host-name"]


def test_a_guest_that_never_syncs_is_given_up_on_with_a_hint(tmp_path: Path) -> None:
    def setup(fake: HostileAgent) -> None:
        fake.values["guest-sync"] = [7] * 100

    async def body(_: HostileAgent, agent: GuestAgent) -> tuple[GuestAgentError, bool]:
        with pytest.raises(GuestAgentError) as caught:
            await agent.host_name()
        return caught.value, await agent.ping()

    error, answers = hostile(tmp_path, body, setup)
    assert "stale replies" in error.message and error.hint
    assert answers is False


def test_an_exec_status_that_never_says_exited_times_out_within_its_timeout(
    tmp_path: Path,
) -> None:
    def setup(fake: HostileAgent) -> None:
        fake.values["guest-exec-status"] = [{"exited": False, "exitcode": "soon"}] * 10_000

    async def body(_: HostileAgent, agent: GuestAgent) -> tuple[GuestTimeout, float]:
        started = time.monotonic()
        with pytest.raises(GuestTimeout) as caught:
            await agent.exec(["sleep", "infinity"], timeout=0.4)
        return caught.value, time.monotonic() - started

    error, took = hostile(tmp_path, body, setup)
    # Its timeout, and at most the one status call under way then (PING_TIMEOUT at least).
    assert 0.4 <= took < 0.4 + ga.PING_TIMEOUT + 1.0 and error.hint


def test_gigantic_output_is_bounded_by_the_read_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A status line longer than the client's read buffer drops the connection (a
    GuestAgentError) instead of growing without end; one within it decodes."""
    monkeypatch.setattr(ga, "_READ_BUFFER", 1 << 20)
    within = b64(b"x" * 600_000)
    beyond = b64(b"y" * 3_000_000)

    def setup(fake: HostileAgent) -> None:
        fake.values["guest-exec-status"] = [
            {"exited": True, "exitcode": 0, "out-data": within},
            {"exited": True, "exitcode": 0, "out-data": beyond},
        ]

    async def body(_: HostileAgent, agent: GuestAgent) -> tuple[ga.ExecResult, GuestAgentError]:
        done = await agent.exec(["cat"], timeout=5)
        tracemalloc.start()
        try:
            with pytest.raises(GuestAgentError) as caught:
                await agent.exec(["cat"], timeout=5)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 12 << 20  # a few copies of the 1 MiB buffer at most, never 4 MB x n
        return done, caught.value

    done, error = hostile(tmp_path, body, setup)
    assert done.stdout == b"x" * 600_000
    assert "connection to the guest agent was lost" in error.message and error.hint


def test_megabytes_in_an_error_or_a_bad_value_are_not_quoted_whole(tmp_path: Path) -> None:
    def setup(fake: HostileAgent) -> None:
        fake.refuse["guest-get-host-name"] = ("GenericError" * 100_000, "no " * 400_000)
        fake.values["guest-fsfreeze-status"] = ["frozen?" * 200_000]

    async def body(_: HostileAgent, agent: GuestAgent) -> list[GuestAgentError]:
        errors = []
        for call in (agent.host_name(), agent.frozen()):
            with pytest.raises(GuestAgentError) as caught:
                await call
            errors.append(caught.value)
        return errors

    refused, malformed = hostile(tmp_path, body, setup)
    assert len(refused.message) < 600 and len(refused.error_class) < 300
    assert "characters)" in refused.message
    assert len(malformed.message) < 400 and malformed.hint


def test_malformed_replies_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def setup(fake: HostileAgent) -> None:
        fake.values["guest-exec"] = [{"pid": "77"}]

    async def body(_: HostileAgent, agent: GuestAgent) -> GuestAgentError:
        with pytest.raises(GuestAgentError) as caught:
            await agent.exec(["true"])
        return caught.value

    with caplog.at_level(logging.WARNING, logger=ga.__name__):
        error = hostile(tmp_path, body, setup)
    assert "pid is not a int" in error.message
    assert any("guest-exec is malformed" in r.getMessage() for r in caplog.records)


# -- through the real supervisor -------------------------------------------------------------


class HostileQemuGA(FakeQemuGA):
    """test_protocol_agents' fake qemu-ga, answering some commands with raw lines (``@ID@``
    stands for the request's id) while ``garbage`` holds some for them."""

    garbage: ClassVar[dict[str, list[bytes]]] = {}  # set by the test (monkeypatch)

    def _answer(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        lines = self.garbage.get(request["execute"])
        if lines:
            self.requests.append(request)
            writer.write(lines.pop(0).replace(b"@ID@", json.dumps(request["id"]).encode()))
            return
        super()._answer(request, writer)


def test_a_spice_agent_sending_garbage_is_logged_and_the_supervisor_serves_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    session = GuestSession()
    garbage = random.Random(20261201).randbytes(70_000)

    async def test() -> dict[str, Any]:
        async with served(tmp_path, session) as rig:
            vdagent = rig.vdagent
            await rig.guest_copies(CLIPBOARD, {TEXT: b"before"})
            assert unb64((await rig.call("clipboard_get"))["data"]) == b"before"
            announced = vdagent.stream.count(b"\x01\x00\x00\x00\x06\x00\x00\x00")
            # Random bytes, then a valid announce of an agent that starts over.
            assert vdagent._writer is not None
            vdagent._writer.write(garbage)
            await vdagent.start()
            # The supervisor said hello again (the stream was out of step) and the agent
            # answered: serving goes on, the clipboard with it.
            await until(vdagent.changed, lambda: vdagent.stream.count(
                b"\x01\x00\x00\x00\x06\x00\x00\x00") > announced)  # fmt: skip
            status = await rig.call("status")
            got: dict[str, Any] | VMDeskError
            try:
                got = await rig.call("clipboard_get", wait=WAIT)
            except VMDeskError as exc:  # a clear refusal is fine too, never a crash
                got = exc
            watched = await rig.guest_copies(CLIPBOARD, {TEXT: b"after garbage"})
            after = await rig.call("clipboard_get")
            # The agent restarts cleanly (the port closes and opens): all works again.
            vdagent.stop()
            await session.port("vdagent0", opened=False)
            await session.port("vdagent0", opened=True)
            await vdagent.start()
            await rig.guest_copies(PRIMARY, {TEXT: b"reconnected"})
            again = await rig.call("clipboard_get", selection="primary")
            offered = await rig.call("clipboard_set", data=b64(b"host"))
            pasted = await vdagent.paste(CLIPBOARD, TEXT)
            return {"status": status, "got": got, "watched": watched, "after": after,
                    "again": again, "offered": offered, "pasted": pasted,
                    "problems": rig.supervisor.guests.spice.problems
                    if rig.supervisor.guests.spice else None}  # fmt: skip

    with caplog.at_level(logging.WARNING, logger=spice_channel.__name__):
        out = run(test)
    assert out["status"]["ok"] and out["status"]["agents"]["spice_agent"] == "connected"
    got = out["got"]
    if isinstance(got, VMDeskError):
        assert got.hint
    else:
        assert got["owner"] in ("none", "guest")
    assert out["watched"]["owner"] == "guest" and out["watched"]["types"] == [TEXT_MIME]
    assert unb64(out["after"]["data"]) == b"after garbage"
    assert unb64(out["again"]["data"]) == b"reconnected"
    assert out["offered"] == {"ok": True, "delivered": True} and out["pasted"] == b"host"
    assert out["problems"] >= 1
    logged = [r.getMessage() for r in caplog.records if r.name == spice_channel.__name__]
    assert logged and "break its protocol" in logged[0] and "starting the conversation" in logged[0]


def test_a_guest_that_sends_only_garbage_cannot_fill_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    channel = spice_channel.SpiceChannel(tmp_path / "spice.sock")
    with caplog.at_level(logging.WARNING, logger=spice_channel.__name__):
        for _ in range(100_000):
            channel._problem(wire.SpiceProtocolError("agent chunk for port 7", hint="out of step"))
    assert channel.problems == 100_000
    # The first ten, then the 16th, 32nd... 65536th: 23 lines for 100000 bad reads.
    assert len(caplog.records) == 10 + 13
    assert "(100000 so far)" not in caplog.text and "(65536 so far)" in caplog.text
    assert "out of step" in caplog.records[0].getMessage()


def test_a_chunk_that_never_ends_holds_the_port_only_until_the_agent_reconnects(
    tmp_path: Path,
) -> None:
    """A header claiming a megabyte (under the cap) that never comes swallows what follows;
    the supervisor waits out its wait and says so, and the agent's next start is heard."""
    session = GuestSession()

    async def test() -> tuple[VMDeskError, dict[str, Any], dict[str, Any]]:
        async with served(tmp_path, session) as rig:
            vdagent = rig.vdagent
            await rig.call("clipboard_get", wait=WAIT)
            assert vdagent._writer is not None
            vdagent._writer.write(
                chunk(1 << 20) + header(MessageType.CLIPBOARD_GRAB, (1 << 20) - 20)
            )
            seen = await rig.generation()
            await vdagent.copy(CLIPBOARD, {TEXT: b"swallowed"})
            unseen = await rig.call("clipboard_watch", seen=seen, wait=0.3)
            assert unseen["generation"] == seen
            swallowed = await rig.call("clipboard_get", wait=0.3)
            vdagent.stop()
            await session.port("vdagent0", opened=False)
            gone = await rig.refused("clipboard_get", wait=0.2)
            await session.port("vdagent0", opened=True)
            await vdagent.start()
            await rig.guest_copies(CLIPBOARD, {TEXT: b"heard"})
            return gone, swallowed, await rig.call("clipboard_get")

    gone, swallowed, heard = run(test)
    assert swallowed["owner"] == "none"  # the grab went into the endless chunk
    assert type(gone) is GuestTimeout and gone.hint
    assert unb64(heard["data"]) == b"heard"


def test_a_qemu_ga_answering_garbage_gives_clear_errors_and_the_supervisor_serves_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(agents_rig, "FakeQemuGA", HostileQemuGA)
    monkeypatch.setattr(HostileQemuGA, "garbage", {
        "guest-network-get-interfaces": [
            b'{"return": {"name": "eth0"}, "id": @ID@}\n',  # an object for a list
            b'{"return": [{"name": 5}], "id": @ID@}\n',  # a number for a name
            b"\xff\xfe this is no JSON\n",  # the connection is dropped
            b'{"id": @ID@}\n',  # neither a return nor an error
        ],
        "guest-exec": [b'{"return": {"pid": "77"}, "id": @ID@}\n'],
        "guest-exec-status": [b'{"return": {"exited": "yes"}, "id": @ID@}\n'],
    })  # fmt: skip
    session = GuestSession()

    async def test() -> tuple[list[VMDeskError], list[dict[str, Any]], dict[str, Any]]:
        async with served(tmp_path, session) as rig:
            refused, statuses = [], []
            for _ in range(4):
                refused.append(await rig.refused("guest_info", wait=WAIT))
                statuses.append(await rig.call("status"))
            refused.append(await rig.refused("guest_exec", argv=["true"], wait=WAIT))
            refused.append(await rig.refused("guest_exec", argv=["true"], wait=WAIT))
            statuses.append(await rig.call("status"))
            # The garbage is used up: the agent behaves again, and is heard again.
            return refused, statuses, await rig.call("guest_info", wait=WAIT)

    with caplog.at_level(logging.WARNING):
        refused, statuses, info = run(test)
    assert all(type(e) is GuestAgentError and e.hint for e in refused), refused
    assert [("malformed" in e.message, "lost" in e.message) for e in refused] == [
        (True, False),
        (True, False),
        (False, True),
        (True, False),
        (True, False),
        (True, False),
    ]
    assert all(s["ok"] and s["status"] == "running" for s in statuses)
    assert info["agent"] == "connected" and info["ipv4"] == "10.0.2.15"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "guest-network-get-interfaces is malformed" in logged
    assert "guest-exec-status is malformed" in logged
