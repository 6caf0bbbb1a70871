"""The guest agent client against a fake qemu-ga: a unix-socket server speaking its wire format
(a stream of JSON requests in, one JSON reply per line out, the 0xFF byte before a
guest-sync-delimited reply, no greeting), with a canned guest behind it."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from qemu.qmp import ExecInterruptedError, QMPClient

from vmdesk.core import errors
from vmdesk.core.errors import GuestAgentError, GuestAgentTimeout, GuestTimeout
from vmdesk.integration.guest_agent import (
    Address,
    AgentCommand,
    ExecResult,
    GuestAgent,
    OsInfo,
    primary_address,
)
from vmdesk.supervisor import protocol

T = TypeVar("T")

INTERFACES = [
    {"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [
        {"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8},
        {"ip-address-type": "ipv6", "ip-address": "::1", "prefix": 128}]},
    {"name": "docker0", "hardware-address": "02:42:ac:11:00:01", "ip-addresses": [
        {"ip-address-type": "ipv4", "ip-address": "172.17.0.1", "prefix": 16}]},
    {"name": "eth0", "hardware-address": "52:54:00:12:34:56", "ip-addresses": [
        {"ip-address-type": "ipv4", "ip-address": "10.0.2.15", "prefix": 24},
        {"ip-address-type": "ipv6", "ip-address": "fe80::5054:ff:fe12:3456", "prefix": 64},
        {"ip-address-type": "ipv6", "ip-address": "fec0::15", "prefix": 64},
        {"ip-address-type": "ipv6", "ip-address": "2a01:4f8:c17:1::15", "prefix": 64}]},
    {"name": "dummy0", "hardware-address": "aa:bb:cc:dd:ee:ff"},  # no addresses at all
]  # fmt: skip
OSINFO = {
    "id": "debian", "name": "Debian GNU/Linux", "pretty-name": "Debian GNU/Linux 12 (bookworm)",
    "version": "12 (bookworm)", "version-id": "12", "kernel-release": "6.1.0-18-amd64",
    "kernel-version": "#1 SMP", "machine": "x86_64",
}  # fmt: skip
COMMANDS = [
    {"name": "guest-exec", "enabled": True, "success-response": True},
    {"name": "guest-shutdown", "enabled": True, "success-response": False},
    {"name": "guest-file-open", "enabled": False, "success-response": True},
]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class FakeAgent:
    """qemu-ga with a canned guest. It answers requests one at a time, in order, as qemu-ga
    does; ``mute`` holds them unanswered (an agent not running yet) until it is cleared,
    when the backlog is answered first. ``requests`` records every request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requests: list[dict[str, Any]] = []
        self.mute = False
        self.held: list[dict[str, Any]] = []
        self.connections = 0
        self.refuse: dict[str, tuple[str, str]] = {}  # command -> (class, desc)
        self.delay: dict[str, float] = {}  # command -> seconds it takes
        self.stale_before_sync: list[dict[str, Any]] = []  # replies a previous session left
        self.garbage_first = b""  # sent on the first connection, before any answer
        self.close_on_shutdown = False
        self.filesystems, self.frozen, self.thaws = 2, False, 0
        self.exec_polls = 0
        self.exec_exits_after: int | None = 1  # polls that find it running; None: forever
        self.exec_end: dict[str, Any] = {}
        self.exec_input = b""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> FakeAgent:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    def commands(self) -> list[str]:
        return [r["execute"] for r in self.requests]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first, pending, decoder = self.connections == 1, "", json.JSONDecoder()
        while data := await reader.read(65536):
            pending += data.decode()
            while pending.strip():
                try:  # qemu-ga's parser takes JSON as a stream: no newline needed
                    request, end = decoder.raw_decode(pending.lstrip())
                except json.JSONDecodeError:
                    break  # the rest has not arrived yet
                pending = pending.lstrip()[end:]
                if first and self.garbage_first:
                    writer.write(self.garbage_first)
                    first = False
                await self._handle(request, writer)
        writer.close()

    async def _handle(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        self.requests.append(request)
        if self.mute:
            self.held.append(request)
            return
        backlog, self.held = [*self.held, request], []
        for each in backlog:
            await self._answer(each, writer)

    async def _answer(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        command = request["execute"]
        await asyncio.sleep(self.delay.get(command, 0))
        if command.startswith("guest-sync"):
            for stale in self.stale_before_sync:
                self._send(writer, {**stale, "id": request["id"]})
            self.stale_before_sync = []
        if command in self.refuse:
            kind, desc = self.refuse[command]
            reply: dict[str, Any] | None = {"error": {"class": kind, "desc": desc}}
        else:
            reply = self._run(command, request.get("arguments", {}))
        if reply is None:  # guest-shutdown succeeded: qemu-ga says nothing
            if self.close_on_shutdown:
                writer.close()
            return
        prefix = b"\xff" if command == "guest-sync-delimited" else b""
        self._send(writer, {**reply, "id": request["id"]}, prefix)

    def _send(
        self, writer: asyncio.StreamWriter, reply: dict[str, Any], prefix: bytes = b""
    ) -> None:
        writer.write(prefix + json.dumps(reply).encode() + b"\n")

    def _run(self, command: str, args: dict[str, Any]) -> dict[str, Any] | None:
        value: Any
        if command in ("guest-sync", "guest-sync-delimited"):
            value = args["id"]
        elif command in ("guest-ping", "guest-set-time"):
            value = {}
        elif command == "guest-info":
            value = {"version": "8.2.2", "supported_commands": COMMANDS}
        elif command == "guest-get-host-name":
            value = {"host-name": "guest"}
        elif command == "guest-get-osinfo":
            value = OSINFO
        elif command == "guest-network-get-interfaces":
            value = INTERFACES
        elif command.startswith(("guest-exec", "guest-fsfreeze")):
            value = self._exec(command, args) if "exec" in command else self._fs(command)
        elif command == "guest-shutdown":
            return None
        else:
            return {"error": {"class": "CommandNotFound", "desc": f"{command} not found"}}
        return {"return": value}

    def _exec(self, command: str, args: dict[str, Any]) -> Any:
        if command == "guest-exec":
            self.exec_input = base64.b64decode(args.get("input-data", ""))
            return {"pid": 4242}
        assert args == {"pid": 4242}
        self.exec_polls += 1
        if self.exec_exits_after is None or self.exec_polls <= self.exec_exits_after:
            return {"exited": False}
        return self.exec_end or {"exited": True, "exitcode": 3,
                                 "out-data": b64(self.exec_input.upper()),
                                 "err-data": b64(b"warn\n"), "out-truncated": True}  # fmt: skip

    def _fs(self, command: str) -> Any:
        if command == "guest-fsfreeze-status":
            return "frozen" if self.frozen else "thawed"
        if command == "guest-fsfreeze-freeze":
            self.frozen = True
            return self.filesystems
        thawed, self.frozen = (self.filesystems if self.frozen else 0), False
        self.thaws += 1
        return thawed


Body = Callable[[FakeAgent, GuestAgent], Awaitable[T]]


def run(tmp_path: Path, body: Body[T], setup: Callable[[FakeAgent], None] = lambda _: None) -> T:
    """``body(fake, agent)`` with a fake qemu-ga listening and a client for it (1 s calls)."""

    async def main() -> T:
        async with FakeAgent(tmp_path / "qga.sock") as fake:
            setup(fake)
            agent = GuestAgent(fake.path, timeout=1.0)
            try:
                return await body(fake, agent)
            finally:
                await agent.close()

    return asyncio.run(main())


# -- the session ---------------------------------------------------------------------------


def test_connect_syncs_with_a_fresh_random_id_then_commands_answer(tmp_path: Path) -> None:
    async def body(fake: FakeAgent, agent: GuestAgent) -> None:
        await agent.connect()
        await agent.connect()  # connected and synced already: nothing sent
        await agent.sync()
        assert fake.commands() == ["guest-sync", "guest-sync"]
        ids = [r["arguments"]["id"] for r in fake.requests]
        assert ids[0] != ids[1] and all(0 < i < 2**63 for i in ids)
        info = await agent.info()
        assert info.version == "8.2.2" and info.supports("guest-exec")
        assert not info.supports("guest-file-open") and not info.supports("guest-fsfreeze-thaw")
        assert AgentCommand("guest-shutdown", True, False) in info.commands
        assert await agent.host_name() == "guest"
        assert await agent.os_info() == OsInfo(
            pretty_name="Debian GNU/Linux 12 (bookworm)", id="debian", version="12 (bookworm)",
            version_id="12", name="Debian GNU/Linux", kernel_release="6.1.0-18-amd64",
            kernel_version="#1 SMP", machine="x86_64",
        )  # fmt: skip
        await agent.set_time(1_700_000_000_123_456_789)
        await agent.set_time()
        assert [r.get("arguments") for r in fake.requests[-2:]] == [
            {"time": 1_700_000_000_123_456_789}, None]  # fmt: skip
        assert await agent.ping() is True
        assert fake.connections == 1

    run(tmp_path, body)


def test_a_connect_callable_gives_the_channel(tmp_path: Path) -> None:
    async def body(fake: FakeAgent, _: GuestAgent) -> str:
        async def channel() -> socket.socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(fake.path))
            return sock

        async with GuestAgent(channel) as agent:
            return await agent.host_name()

    assert run(tmp_path, body) == "guest"


def test_an_agent_that_never_answers_times_out_with_a_hint(tmp_path: Path) -> None:
    async def body(fake: FakeAgent, agent: GuestAgent) -> tuple[GuestAgentTimeout, bool, float]:
        fake.mute = True
        with pytest.raises(GuestAgentTimeout) as caught:
            await agent.connect(timeout=0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        alive = await agent.ping(timeout=0.05)
        return caught.value, alive, loop.time() - started

    error, alive, took = run(tmp_path, body)
    assert isinstance(error, GuestTimeout) and error.error_class == ""
    assert "did not answer guest-sync" in error.message
    assert "`systemctl status qemu-guest-agent`" in (error.hint or "")
    assert alive is False and took < 0.5


def test_after_a_timeout_it_syncs_again_and_the_late_reply_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(fake: FakeAgent, agent: GuestAgent) -> tuple[list[str], str]:
        await agent.connect()
        fake.mute = True  # the agent hangs, then answers its backlog late
        with pytest.raises(GuestAgentTimeout, match="guest-get-osinfo"):
            await agent.os_info(timeout=0.05)
        fake.mute = False
        return fake.commands(), await agent.host_name()

    with caplog.at_level(logging.WARNING, logger="qemu.qmp"):
        before, host = run(tmp_path, body)
    # The late osinfo reply came first, and was not taken for the host name.
    assert host == "guest"
    assert before == ["guest-sync", "guest-get-osinfo"]
    assert "message dropped" in caplog.text


@pytest.mark.parametrize(
    "stale",
    [
        {"return": 1234},  # a previous session's sync, with the message id we use now
        {"return": {"host-name": "from before"}},
        {"error": {"class": "GenericError", "desc": "from before"}},
    ],
)
def test_a_stale_reply_from_a_previous_session_is_skipped(
    tmp_path: Path, stale: dict[str, Any]
) -> None:
    async def body(fake: FakeAgent, agent: GuestAgent) -> tuple[str, list[str]]:
        fake.stale_before_sync = [stale]
        await agent.connect()
        return await agent.host_name(), fake.commands()

    host, commands = run(tmp_path, body)
    assert host == "guest"
    assert commands == ["guest-sync", "guest-sync", "guest-get-host-name"]


def test_qemu_qmp_cannot_read_the_0xff_before_a_delimited_reply(tmp_path: Path) -> None:
    """Why the client uses guest-sync: qemu.qmp's reader dies on the sentinel byte."""

    async def body(fake: FakeAgent, _: GuestAgent) -> BaseException | None:
        client = QMPClient("raw")
        client.await_greeting = client.negotiate = False
        await client.connect(str(fake.path))
        with pytest.raises(ExecInterruptedError):
            await client.execute("guest-sync-delimited", {"id": 5})
        try:
            await client.disconnect()
        except Exception as exc:  # the reader's failure
            return exc
        return None

    assert isinstance(run(tmp_path, body), UnicodeDecodeError)


def test_stale_bytes_that_break_the_connection_are_left_behind_on_a_new_one(
    tmp_path: Path,
) -> None:
    async def body(fake: FakeAgent, agent: GuestAgent) -> tuple[bool, int]:
        # A previous client's delimited reply, still in the channel.
        fake.garbage_first = b'\xff{"return": 77, "id": "__qmp#00000"}\n'
        alive = await agent.ping()
        return alive, fake.connections

    assert run(tmp_path, body) == (True, 2)


def test_an_agent_socket_that_is_not_there_is_unreachable_not_a_timeout(tmp_path: Path) -> None:
    async def main() -> tuple[GuestAgentError, bool]:
        agent = GuestAgent(tmp_path / "none.sock")
        with pytest.raises(GuestAgentError) as caught:
            await agent.host_name()
        return caught.value, await agent.ping()

    error, alive = asyncio.run(main())
    assert type(error) is GuestAgentError and error.error_class == ""
    assert "none.sock" in error.message and "guest agent channel" in (error.hint or "")
    assert alive is False


def test_a_refusal_keeps_the_agents_class_and_description(tmp_path: Path) -> None:
    async def body(fake: FakeAgent, agent: GuestAgent) -> tuple[GuestAgentError, str]:
        fake.refuse["guest-get-osinfo"] = (
            "CommandNotFound", "Command guest-get-osinfo has been disabled")  # fmt: skip
        with pytest.raises(GuestAgentError) as caught:
            await agent.os_info()
        return caught.value, await agent.host_name()  # still connected and in sync

    error, host = run(tmp_path, body)
    assert type(error) is GuestAgentError and error.error_class == "CommandNotFound"
    assert "has been disabled" in error.message and "guest-get-osinfo" in error.message
    assert "info()" in (error.hint or "")
    assert host == "guest"


def test_guest_agent_errors_cross_the_supervisor_socket_with_their_class() -> None:
    sent = GuestAgentError("refused", "do that", error_class="GenericError")
    back = protocol.error_from(json.loads(protocol.encode_error(sent)))
    assert type(back) is GuestAgentError and back.error_class == "GenericError"
    late = protocol.error_from(json.loads(protocol.encode_error(GuestAgentTimeout("quiet"))))
    assert type(late) is GuestAgentTimeout and isinstance(late, errors.GuestTimeout)


# -- networking ----------------------------------------------------------------------------


def test_addresses_leave_out_loopback_and_the_primary_ones_are_the_vms_own(
    tmp_path: Path,
) -> None:
    async def body(_: FakeAgent, agent: GuestAgent) -> list[Address]:
        return await agent.addresses()

    found = run(tmp_path, body)
    eth0 = "52:54:00:12:34:56"
    assert found == [
        Address("docker0", "ipv4", "172.17.0.1", 16, "02:42:ac:11:00:01"),
        Address("eth0", "ipv4", "10.0.2.15", 24, eth0),
        Address("eth0", "ipv6", "fe80::5054:ff:fe12:3456", 64, eth0),
        Address("eth0", "ipv6", "fec0::15", 64, eth0),
        Address("eth0", "ipv6", "2a01:4f8:c17:1::15", 64, eth0),
    ]
    assert primary_address(found) == found[1]  # not the container bridge listed first
    assert primary_address(found, "ipv6") == found[4]  # global, never link-local
    assert primary_address(found[2:3], "ipv6") is None
    assert primary_address([], "ipv4") is None


# -- exec ----------------------------------------------------------------------------------


def test_exec_sends_input_and_polls_until_the_program_exits(tmp_path: Path) -> None:
    async def body(fake: FakeAgent, agent: GuestAgent) -> tuple[ExecResult, int, Any]:
        done = await agent.exec(["tr", "a-z", "A-Z"], input=b"hello\n", timeout=5)
        return done, fake.exec_polls, fake.requests[1]["arguments"]

    done, polls, sent = run(tmp_path, body)
    assert sent == {"path": "tr", "arg": ["a-z", "A-Z"], "capture-output": True,
                    "input-data": b64(b"hello\n")}  # fmt: skip
    assert polls == 2  # running at the first poll, exited at the second
    assert done == ExecResult(3, None, b"HELLO\n", b"warn\n", True, False)
    assert not done.ok


def test_exec_reports_a_signal_and_empty_output(tmp_path: Path) -> None:
    def setup(fake: FakeAgent) -> None:
        fake.exec_exits_after, fake.exec_end = 0, {"exited": True, "signal": 9}

    async def body(_: FakeAgent, agent: GuestAgent) -> ExecResult:
        return await agent.exec(["sleep", "100"])

    assert run(tmp_path, body, setup) == ExecResult(None, 9, b"", b"")


def test_exec_gives_up_on_a_program_that_does_not_end(tmp_path: Path) -> None:
    def setup(fake: FakeAgent) -> None:
        fake.exec_exits_after = None

    async def body(_: FakeAgent, agent: GuestAgent) -> GuestTimeout:
        with pytest.raises(GuestTimeout) as caught:
            await agent.exec(["yes"], timeout=0.05)
        return caught.value

    error = run(tmp_path, body, setup)
    assert not isinstance(error, GuestAgentError)  # the agent answered; the program runs on
    assert "pid 4242" in error.message and "still running" in (error.hint or "")


# -- file systems --------------------------------------------------------------------------


def test_freeze_thaw_and_status(tmp_path: Path) -> None:
    async def body(_: FakeAgent, agent: GuestAgent) -> list[object]:
        return [await agent.freeze(), await agent.frozen(), await agent.thaw(),
                await agent.frozen(), await agent.thaw()]  # fmt: skip

    assert run(tmp_path, body) == [2, True, 2, False, 0]


def test_quiesced_thaws_when_the_block_fails(tmp_path: Path) -> None:
    async def body(fake: FakeAgent, agent: GuestAgent) -> list[bool]:
        seen = []
        with pytest.raises(RuntimeError, match="snapshot failed"):
            async with agent.quiesced() as froze:
                seen += [froze, fake.frozen]
                raise RuntimeError("snapshot failed")
        return [*seen, fake.frozen]

    assert run(tmp_path, body) == [True, True, False]


def test_quiesced_thaws_when_cancelled(tmp_path: Path) -> None:
    async def body(fake: FakeAgent, agent: GuestAgent) -> tuple[bool, int]:
        inside = asyncio.Event()

        async def snapshot() -> None:
            async with agent.quiesced():
                inside.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(snapshot())
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return fake.frozen, fake.thaws

    assert run(tmp_path, body) == (False, 1)


def test_quiesced_thaws_after_a_freeze_that_answered_too_late(tmp_path: Path) -> None:
    async def body(fake: FakeAgent, agent: GuestAgent) -> tuple[bool, bool, int]:
        fake.delay["guest-fsfreeze-freeze"] = 0.2  # syncing a lot of dirty data
        async with agent.quiesced(required=False, timeout=0.05) as froze:
            pass
        return froze, fake.frozen, fake.thaws

    # The freeze happened after the client stopped waiting; the thaw waited behind it.
    assert run(tmp_path, body) == (False, False, 1)


def test_quiesced_without_a_freeze_thaws_nothing(tmp_path: Path) -> None:
    async def body(fake: FakeAgent, agent: GuestAgent) -> tuple[bool, int]:
        fake.refuse["guest-fsfreeze-freeze"] = ("GenericError", "failed to freeze /: busy")
        with pytest.raises(GuestAgentError, match="busy"):
            async with agent.quiesced():
                raise AssertionError("not reached")
        async with agent.quiesced(required=False) as froze:
            pass
        return froze, fake.thaws

    assert run(tmp_path, body) == (False, 0)


# -- shutdown ------------------------------------------------------------------------------


def test_shutdown_is_silence_and_the_next_call_syncs_again(tmp_path: Path) -> None:
    async def body(fake: FakeAgent, agent: GuestAgent) -> list[str]:
        await agent.shutdown("reboot", timeout=0.05)
        assert fake.requests[-1]["arguments"] == {"mode": "reboot"}
        assert await agent.ping()
        return fake.commands()

    assert run(tmp_path, body) == [
        "guest-sync", "guest-shutdown", "guest-sync", "guest-ping"]  # fmt: skip


def test_shutdown_succeeds_when_the_guest_goes_away(tmp_path: Path) -> None:
    async def body(fake: FakeAgent, agent: GuestAgent) -> None:
        fake.close_on_shutdown = True
        await agent.shutdown(timeout=5)  # returns as the connection closes, not after 5 s

    run(tmp_path, body)


def test_a_refused_shutdown_is_an_error(tmp_path: Path) -> None:
    async def body(fake: FakeAgent, agent: GuestAgent) -> GuestAgentError:
        fake.refuse["guest-shutdown"] = ("GenericError", "child process has failed to shutdown")
        with pytest.raises(GuestAgentError) as caught:
            await agent.shutdown()
        return caught.value

    error = run(tmp_path, body)
    assert error.error_class == "GenericError" and "failed to shutdown" in error.message
