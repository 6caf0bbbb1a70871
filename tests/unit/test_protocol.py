"""The supervisor's control protocol, served for real: the Supervisor answers on a real unix
socket and the client asks through its public functions. Only the hypervisor is a fake (a
Session that records what it was asked)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from vmdesk.core import config as vmconfig
from vmdesk.core import errors
from vmdesk.core.bundle import Bundle
from vmdesk.engines.base import Capabilities
from vmdesk.engines.registry import QemuEngine
from vmdesk.engines.vz import capabilities as vz_caps
from vmdesk.supervisor import client, launcher, protocol
from vmdesk.supervisor import status as vmstatus
from vmdesk.supervisor.daemon import Supervisor

T = TypeVar("T")
VZ = vz_caps.capabilities(vz_caps.HostFacts("darwin", "arm64", (14, 0)))


class FakeSession:
    """Stands in for the hypervisor: records each call; ``fail`` makes a call raise."""

    def __init__(self, *, deaf: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail: dict[str, BaseException] = {}
        self.deaf = deaf  # ignores the power button
        self.state = "running"
        self.serial: asyncio.Queue[bytes] = asyncio.Queue()
        self.ended = asyncio.Event()
        self.code = 0
        self._quit = False

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, *args))
        if name in self.fail:
            raise self.fail[name]

    def end(self, code: int = 0) -> None:
        self.code = code
        self.ended.set()
        self.serial.put_nowait(b"")

    # -- the Session protocol (launch and adopt are the launcher's, not served here) ---

    def launch(self) -> dict[str, Any] | None:
        return None

    def launch_spec(self) -> dict[str, Any] | None:
        return None

    def adopt(self, process: Any, spec: dict[str, Any]) -> None:
        raise AssertionError("not a replayed launch")

    async def attach(self) -> None:
        self._record("attach")

    async def status(self) -> str:
        return self.state

    async def pause(self) -> None:
        self._record("pause")
        self.state = "paused"

    async def resume(self) -> None:
        self._record("resume")
        self.state = "running"

    async def reboot(self) -> None:
        self._record("reboot")

    async def powerdown(self) -> None:
        self._record("powerdown")
        if not self.deaf:
            self.end()

    async def quit(self) -> None:
        self._record("quit")
        self._quit = True
        self.end()

    async def kill(self) -> None:
        self._record("kill")
        self.end(-9)

    async def memory(self, target: int | None = None) -> int:
        self._record("memory", target)
        if target is not None:
            self.balloon = target
        return getattr(self, "balloon", 2048 << 20)

    async def screenshot(self, path: Path) -> None:
        self._record("screenshot", path)
        path.write_bytes(b"\x89PNG")

    async def save_snapshot(self, tag: str, disk_only: bool = False) -> None:
        self._record("save_snapshot", tag, disk_only)

    async def load_snapshot(self, tag: str) -> None:
        self._record("load_snapshot", tag)

    async def delete_snapshot(self, tag: str) -> None:
        self._record("delete_snapshot", tag)

    async def save_state(self, path: Path) -> None:
        self._record("save_state", path)
        self.state = "paused"

    @property
    def restoring(self) -> bool:
        return False

    async def finish_restore(self) -> None:
        raise AssertionError("not restoring")

    async def wait(self) -> int:
        await self.ended.wait()
        return self.code

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        await self.ended.wait()
        none: list[dict[str, Any]] = []  # the supervisor's own events are what is checked
        for event in none:
            yield event

    async def serial_read(self) -> bytes:
        return await self.serial.get()

    async def serial_write(self, data: bytes) -> None:
        self._record("serial_write", data)

    async def close(self) -> None:
        self._record("close")

    @property
    def exit_reason(self) -> str:
        return "killed" if self.code else ""

    @property
    def pid(self) -> int | None:
        return 4242

    @property
    def quit_requested(self) -> bool:
        return self._quit

    @property
    def accel_reason(self) -> str:
        return "tcg: a test"


class FakeWindowSession(FakeSession):
    """A session of an engine with windows (a WindowSession)."""

    def __init__(self) -> None:
        super().__init__()
        self.window_open = False

    async def open_window(self) -> bool:
        self._record("open_window")
        opened, self.window_open = not self.window_open, True
        return opened


@contextlib.asynccontextmanager
async def served(
    tmp_path: Path, session: FakeSession, caps: Capabilities | None = None
) -> AsyncIterator[tuple[Supervisor, dict[str, Any]]]:
    """The real Supervisor running ``session`` in a bundle this test owns; yields it and
    its hello. On the way out the fake hypervisor exits, and the supervisor ends with it."""
    bundle = Bundle.create(tmp_path / "vm.vmdesk", vmconfig.from_dict({"name": "vm"}))
    hello: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    supervisor = Supervisor(
        bundle,
        bundle.load(),
        session,
        hello.set_result,
        capabilities=caps or QemuEngine().capabilities(),
    )
    supervisor.sockets.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with bundle.lock("serving the protocol tests"):
        task = asyncio.create_task(supervisor.run())
        try:
            yield supervisor, await asyncio.wait_for(hello, 10)
        finally:
            session.end()
            await asyncio.wait_for(task, 10)
            supervisor.close()


def run(test: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(test())  # type: ignore[arg-type]


async def call(supervisor: Supervisor, op: str, **args: Any) -> dict[str, Any]:
    """What the CLI and web do: client.call, in a thread (it blocks)."""
    return await asyncio.to_thread(client.call, supervisor.bundle, op, **args)


async def raw(supervisor: Supervisor, line: bytes) -> dict[str, Any]:
    """One hand-written request line, for what this version's client never sends."""

    def ask() -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(10)
            conn.connect(str(supervisor.sockets.control))
            conn.sendall(line)
            reply: dict[str, Any] = json.loads(conn.makefile("rb").readline())
            return reply

    return await asyncio.to_thread(ask)


async def refused(supervisor: Supervisor, op: str, **args: Any) -> errors.VMDeskError:
    with pytest.raises(errors.VMDeskError) as caught:
        await call(supervisor, op, **args)
    return caught.value


def events(supervisor: Supervisor) -> list[dict[str, Any]]:
    return [json.loads(line) for line in supervisor.files.events.read_text().splitlines()]


# -- one test per operation -----------------------------------------------------------------


def test_the_hello_and_status_carry_the_protocol_version(tmp_path: Path) -> None:
    async def test() -> tuple[dict[str, Any], dict[str, Any]]:
        async with served(tmp_path, FakeSession()) as (supervisor, hello):
            return hello, await call(supervisor, "status")

    hello, status = run(test)
    assert hello["ok"] is True and hello["protocol"] == protocol.PROTOCOL_VERSION
    assert hello["pid"] == os.getpid() and hello["accel"] == "tcg: a test"
    assert status["status"] == "running" and status["engine_pid"] == 4242
    assert status["protocol"] == protocol.PROTOCOL_VERSION


def test_pause_resume_and_reboot_answer_with_the_status_after(tmp_path: Path) -> None:
    session = FakeSession()

    async def test() -> list[str]:
        async with served(tmp_path, session) as (supervisor, _):
            return [(await call(supervisor, op))["status"] for op in ("pause", "resume", "reboot")]

    assert run(test) == ["paused", "running", "running"]
    assert session.calls[1:4] == [("pause",), ("resume",), ("reboot",)]


def test_stop_presses_the_button_and_forces_a_guest_that_ignores_it(tmp_path: Path) -> None:
    polite, deaf = FakeSession(), FakeSession(deaf=True)

    async def test(session: FakeSession, where: str, **args: Any) -> dict[str, Any]:
        (tmp_path / where).mkdir()
        async with served(tmp_path / where, session) as (supervisor, _):
            return await call(supervisor, "stop", **args)

    assert run(lambda: test(polite, "a")) == {"forced": False, "ok": True}
    assert ("powerdown",) in polite.calls and ("quit",) not in polite.calls
    assert run(lambda: test(deaf, "b", stop_timeout=0.2))["forced"] is True
    assert deaf.calls[1:3] == [("powerdown",), ("quit",)]
    assert run(lambda: test(FakeSession(), "c", force=True))["forced"] is True


def test_kill(tmp_path: Path) -> None:
    session = FakeSession()

    async def test() -> dict[str, Any]:
        async with served(tmp_path, session) as (supervisor, _):
            reply = await call(supervisor, "kill")
            await asyncio.wait_for(session.ended.wait(), 5)
            return reply

    assert run(test) == {"ok": True}
    assert ("kill",) in session.calls


def test_screenshot(tmp_path: Path) -> None:
    session = FakeSession()
    target = tmp_path / "screen.png"

    async def test() -> Path:
        async with served(tmp_path, session) as (supervisor, _):
            return await asyncio.to_thread(client.screenshot, supervisor.bundle, target)

    assert run(test) == target and target.read_bytes() == b"\x89PNG"
    assert ("screenshot", target) in session.calls


def test_memory_moves_the_balloon_within_the_boot_size(tmp_path: Path) -> None:
    session = FakeSession()

    async def test() -> tuple[dict[str, Any], dict[str, Any], list[errors.VMDeskError]]:
        async with served(tmp_path, session) as (supervisor, _):
            before = await call(supervisor, "memory")
            after = await call(supervisor, "memory", target=512 << 20)
            errs = [await refused(supervisor, "memory", target=4 << 30),
                    await refused(supervisor, "memory", target=64 << 20)]  # fmt: skip
            return before, after, errs

    before, after, errs = run(test)
    assert (before["booted"], before["guest"]) == (2048 << 20, 2048 << 20)  # the default VM
    assert after["guest"] == 512 << 20
    assert isinstance(after["host_rss"], int) or after["host_rss"] is None
    assert session.calls.count(("memory", None)) == 1 and ("memory", 512 << 20) in session.calls
    for error in errs:  # asked for more than it booted with, or too little: nothing moved
        assert type(error) is errors.Conflict and "between 128 MiB and the 2048 MiB" in str(error)
        assert "vmdesk edit vm --memory" in (error.hint or "")
    assert ("memory", 4 << 30) not in session.calls


def test_memory_without_a_balloon_is_unsupported(tmp_path: Path) -> None:
    async def test() -> errors.VMDeskError:
        async with served(tmp_path, FakeWindowSession(), VZ) as (supervisor, _):
            return await refused(supervisor, "memory", target=512 << 20)

    error = run(test)
    assert type(error) is errors.Unsupported and "without a memory balloon" in error.message


def test_suspend_saves_the_state_into_the_bundle_then_ends(tmp_path: Path) -> None:
    session = FakeSession()

    async def test() -> tuple[dict[str, Any], Path]:
        async with served(tmp_path, session) as (supervisor, _):
            reply = await call(supervisor, "suspend", timeout=30)
            return reply, supervisor.files.suspended_state

    reply, state = run(test)
    assert isinstance(reply["seconds"], float)
    assert session.calls[1:3] == [("save_state", state), ("quit",)]
    assert vmstatus.last_exit(tmp_path / "vm.vmdesk")["status"] == "suspended"


def test_window_opens_on_an_engine_with_windows(tmp_path: Path) -> None:
    session = FakeWindowSession()

    async def test() -> list[str]:
        async with served(tmp_path, session, VZ) as (supervisor, _):
            return [(await asyncio.to_thread(client.window, supervisor.bundle))["window"]
                    for _ in range(2)]  # fmt: skip

    assert run(test) == ["opened", "already open"]
    assert session.calls.count(("open_window",)) == 2


def test_window_on_qemu_is_unsupported_with_todays_message(tmp_path: Path) -> None:
    async def test() -> errors.VMDeskError:
        # A session that could open one: the engine's capabilities decide, not the object.
        async with served(tmp_path, FakeWindowSession()) as (supervisor, _):
            return await refused(supervisor, "window")

    error = run(test)
    assert type(error) is errors.Unsupported and error.exit_code == 7
    assert error.message == (
        "VM 'vm' runs on QEMU, which shows its screen over VNC, not in a native window"
    )
    assert "`vmdesk edit vm --vnc`" in (error.hint or "")


def test_snapshots_save_load_and_delete(tmp_path: Path) -> None:
    session = FakeSession()

    async def test() -> list[dict[str, Any]]:
        async with served(tmp_path, session) as (supervisor, _):
            await call(supervisor, "snapshot_save", tag="s1")
            await call(supervisor, "snapshot_save", tag="s2", disk_only=True)
            await call(supervisor, "snapshot_load", tag="s1")
            await call(supervisor, "snapshot_delete", tag="s2")
            return events(supervisor)

    logged = [(e["event"], e.get("data")) for e in run(test)]
    assert session.calls[1:5] == [
        ("save_snapshot", "s1", False), ("save_snapshot", "s2", True),
        ("load_snapshot", "s1"), ("delete_snapshot", "s2"),
    ]  # fmt: skip
    assert ("SNAPSHOT_LOAD", {"tag": "s1"}) in logged
    assert ("SNAPSHOT_DELETE", {"tag": "s2"}) in logged


def test_wait_serial_matches_the_console_or_times_out_as_a_guest_timeout(tmp_path: Path) -> None:
    session = FakeSession()

    async def test() -> tuple[str, errors.VMDeskError]:
        async with served(tmp_path, session) as (supervisor, _):
            session.serial.put_nowait(b"booting\nVMDESK-READY 1.5\n")
            line = await asyncio.to_thread(
                client.wait_ready, supervisor.bundle, r"^VMDESK-READY \S+", 5
            )
            late = await refused(supervisor, "wait_serial", pattern="never", wait=0.1)
            return line, late

    line, late = run(test)
    assert line == "VMDESK-READY 1.5"
    assert type(late) is errors.GuestTimeout and late.message == "wait_serial timed out"
    assert late.hint == f"see {tmp_path / 'vm.vmdesk' / 'logs' / 'serial.log'}"


# -- errors keep their class ----------------------------------------------------------------


def test_errors_raised_in_the_supervisor_arrive_as_their_class(tmp_path: Path) -> None:
    session = FakeSession()
    session.fail = {
        "screenshot": errors.QMPError("Device 'video0' not found", "is its display on?",
                                      error_class="DeviceNotFound"),
        "reboot": RuntimeError("boom"),
        "save_snapshot": errors.StorageError("the disk is full", hint="free some space"),
    }  # fmt: skip

    async def test() -> list[errors.VMDeskError]:
        async with served(tmp_path, session) as (supervisor, _):
            found = [await refused(supervisor, "screenshot", path=str(tmp_path / "x.png")),
                     await refused(supervisor, "reboot"),
                     await refused(supervisor, "snapshot_save", tag="s")]  # fmt: skip
            assert (await call(supervisor, "status"))["status"] == "running"  # serves on
            return found

    qmp, crash, storage = run(test)
    assert type(qmp) is errors.QMPError and qmp.error_class == "DeviceNotFound"
    assert (qmp.message, qmp.hint) == ("Device 'video0' not found", "is its display on?")
    assert type(crash) is errors.EngineError and crash.message == "RuntimeError: boom"
    assert type(storage) is errors.StorageError and storage.hint == "free some space"


def test_a_stopping_vm_refuses_changes_with_a_conflict(tmp_path: Path) -> None:
    session = FakeSession(deaf=True)

    async def test() -> tuple[errors.VMDeskError, dict[str, Any], dict[str, Any]]:
        async with served(tmp_path, session) as (supervisor, _):
            stopping = asyncio.create_task(call(supervisor, "stop", stop_timeout=30))
            while ("powerdown",) not in session.calls:
                await asyncio.sleep(0.01)
            error = await refused(supervisor, "pause")
            status = await call(supervisor, "status")  # still served, as stop and kill are
            await call(supervisor, "kill")
            return error, status, await stopping

    error, status, stopped = run(test)
    assert type(error) is errors.Conflict and error.exit_code == 5
    assert error.message == "VM 'vm' is stopping, so it cannot pause"
    assert "`vmdesk kill vm`" in (error.hint or "")
    assert status["status"] == "stopping" and ("pause",) not in session.calls
    assert stopped["ok"] is True


def test_a_request_to_a_vm_that_is_not_running_is_not_running(tmp_path: Path) -> None:
    bundle = Bundle.create(tmp_path / "vm.vmdesk", vmconfig.from_dict({"name": "vm"}))
    with pytest.raises(client.NotRunning, match="is not running"):
        client.call(bundle, "pause")


@pytest.mark.parametrize("kind", sorted({**errors.KINDS, **client.KINDS}))
def test_every_error_kind_round_trips(kind: str) -> None:
    cls = {**errors.KINDS, **client.KINDS}[kind]
    if cls is errors.ConfigError:
        sent: errors.VMDeskError = errors.ConfigError(
            [errors.Problem("cpus", "must be at least 1", "give it 1 or more"),
             errors.Problem("", "no disks", "add one")],
            context="vm.vmdesk/config.json",
        )  # fmt: skip
    elif cls is errors.QMPError:
        sent = errors.QMPError("no such snapshot", "list them", error_class="GenericError")
    else:
        sent = cls(f"a {kind}", hint=f"do something about the {kind}")
    line = protocol.encode_error(sent)
    back = protocol.error_from(json.loads(line), client.KINDS)
    assert type(back) is cls and str(back) == str(sent)
    assert (back.message, back.hint, back.exit_code) == (sent.message, sent.hint, sent.exit_code)
    if isinstance(sent, errors.ConfigError):
        assert isinstance(back, errors.ConfigError)
        assert [p.as_dict() for p in back.problems] == [p.as_dict() for p in sent.problems]
    if isinstance(sent, errors.QMPError):
        assert isinstance(back, errors.QMPError) and back.error_class == "GenericError"


def test_an_unknown_kind_arrives_as_its_nearest_known_base() -> None:
    class SnapshotBusy(errors.Conflict):
        pass

    back = protocol.error_from(json.loads(protocol.encode_error(SnapshotBusy("busy", "wait"))))
    assert type(back) is errors.Conflict and (back.message, back.hint) == ("busy", "wait")
    # A supervisor from before error kinds sent only the message and hint.
    old = protocol.error_from({"ok": False, "error": "it broke", "hint": None})
    assert type(old) is errors.EngineError and old.message == "it broke"


def test_a_failed_start_keeps_its_class_in_the_hello() -> None:
    read_fd, write_fd = os.pipe()
    report = launcher._reporter(write_fd)
    report({"ok": False, **errors.PolicyViolation("bridged needs unrestricted", "edit").to_wire()})
    with os.fdopen(read_fd, "rb") as pipe:
        hello = json.loads(pipe.readline())
    assert hello["protocol"] == protocol.PROTOCOL_VERSION and hello["kind"] == "PolicyViolation"
    error = client._error(hello)
    assert type(error) is errors.PolicyViolation and error.exit_code == 6


# -- malformed requests and other versions --------------------------------------------------


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b"not json\n", "not JSON"),
        (b"[1, 2]\n", "not a JSON object"),
        (b'{"op": "screenshot", "version": 3}\n', "screenshot needs path"),
        (b'{"op": "stop", "version": 3, "stop_timeout": "soon"}\n', "stop_timeout is 'soon'"),
        (b'{"op": "stop", "version": 3, "force": 1}\n', "force is 1, not a bool"),
        (b'{"op": "stop", "version": 3, "stop_timout": 5}\n', "stop takes no stop_timout"),
        (b'{"op": "stop", "version": "2"}\n', "version is '2'"),
        (b'{"op": "explode", "version": 3}\n', "unknown request 'explode'"),
    ],
)
def test_malformed_or_unknown_requests_are_protocol_errors(line: bytes, says: str) -> None:
    with pytest.raises(errors.ProtocolError, match=says):
        protocol.decode_request(line, "vm")


def test_numbers_and_defaults_are_filled_in() -> None:
    stop = protocol.decode_request(b'{"op": "stop", "version": 3, "stop_timeout": 5}', "vm")
    assert stop == {"op": "stop", "version": 3, "force": False, "stop_timeout": 5.0}
    wait = protocol.decode_request(b'{"op": "wait_serial", "version": 3, "pattern": "x"}', "vm")
    assert wait == {"op": "wait_serial", "version": 3, "pattern": "x", "wait": 60.0}


def test_another_version_can_still_stop_but_not_pause(tmp_path: Path) -> None:
    session = FakeSession(deaf=True)

    async def test() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with served(tmp_path, session) as (supervisor, _):
            old = b'{"op": "pause"}\n'  # version 1 sent none
            newer = b'{"op": "status", "version": 99, "detail": "more"}\n'
            stop = b'{"op": "stop", "version": 1, "stop_timeout": 0.1, "graceful": true}\n'
            return (await raw(supervisor, old), await raw(supervisor, newer),
                    await raw(supervisor, b'{"op": "pause", "version": 4}\n'),
                    await raw(supervisor, stop))  # fmt: skip

    paused_old, status_newer, paused_newer, stopped = run(test)
    refusal = protocol.error_from(paused_old)
    assert type(refusal) is errors.Conflict and "another VM-Desk version" in refusal.message
    assert paused_old["error"] == refusal.message  # what a client of version 1 reads
    assert "`vmdesk stop vm`" in (refusal.hint or "")
    assert protocol.error_from(paused_newer).message.endswith("(protocol 4)")
    assert ("pause",) not in session.calls
    assert status_newer["ok"] is True and status_newer["protocol"] == protocol.PROTOCOL_VERSION
    assert stopped == {"ok": True, "forced": True}
