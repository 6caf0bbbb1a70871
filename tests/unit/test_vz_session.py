"""The VZ session's lifecycle against the recording fake: one queue, guarded callbacks,
state mapping, errors surfaced. (Nothing here touches a real Virtualization.framework.)"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from vmdesk.core.config import from_dict
from vmdesk.core.errors import EngineError, Unsupported
from vmdesk.core.layout import Layout
from vmdesk.engines.vz import api_surface, fake
from vmdesk.engines.vz.capabilities import HostFacts
from vmdesk.engines.vz.session import STATES, VzSession, guarded, state_name

HOST14 = HostFacts("darwin", "arm64", (14, 0))
HOST13 = HostFacts("darwin", "arm64", (13, 0))
QUEUE = "vz-queue"


class FakeVM:
    """How the fake VZVirtualMachine behaves, and on which threads it was called."""

    def __init__(self, runtime: FakeRuntime) -> None:
        self.runtime = runtime
        self.state = 0
        self.threads: set[str] = set()
        self.start_error: str | None = None
        self.requested_stop = False

    def respond(self, fw: fake.FakeFramework) -> None:
        def on_queue(function: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(obj: Any, *args: Any) -> Any:
                self.threads.add(threading.current_thread().name)
                return function(*args)

            return wrapper

        def finish(state: int) -> Callable[[Any], None]:
            def call(handler: Any) -> None:
                self.state = state
                handler(None)

            return call

        def start(handler: Any) -> None:
            if self.start_error:
                handler(fake.FakeError(fw, self.start_error))
            else:
                finish(1)(handler)

        def request_stop(out: None) -> tuple[bool, None]:
            self.requested_stop = True
            return True, None

        def save(url: Any, handler: Any) -> None:
            Path(url._ctor[1][0]).write_bytes(b"state")
            handler(None)

        responses = {
            "startWithCompletionHandler_": start,
            "pauseWithCompletionHandler_": finish(2),
            "resumeWithCompletionHandler_": finish(1),
            "stopWithCompletionHandler_": finish(0),
            "restoreMachineStateFromURL_completionHandler_": lambda url, h: finish(2)(h),
            "saveMachineStateToURL_completionHandler_": save,
            "state": lambda: self.state,
            "canRequestStop": lambda: True,
            "canStop": lambda: True,
            "requestStopWithError_": request_stop,
        }
        for selector, function in responses.items():
            fw.responses[f"VZVirtualMachine.{selector}"] = on_queue(function)


class FakeRuntime:
    def __init__(self, macos: tuple[int, int] = (14, 0)) -> None:
        self.fw = fake.FakeFramework(macos)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix=QUEUE)
        self.vm = FakeVM(self)
        self.vm.respond(self.fw)
        self.guest_stop: Callable[[], None] = lambda: None
        self.error: Callable[[Any], None] = lambda _: None
        self.main_work: list[Callable[[], None]] = []
        self.fw.run_loop_turns.append(self.drain_main_queue)

    def queue(self) -> str:
        return "the queue"

    def main_queue(self) -> str:
        return "the main queue"

    def dispatch(self, queue: Any, work: Callable[[], None]) -> None:
        assert queue in ("the queue", "the main queue")
        if queue == "the main queue":  # drained by the main run loop's turns (pumped)
            self.main_work.append(work)
        else:
            self.pool.submit(work)

    def drain_main_queue(self) -> None:
        assert threading.current_thread() is threading.main_thread()
        while self.main_work:
            self.main_work.pop(0)()

    def delegate(self, on_guest_stop: Callable[[], None], on_error: Callable[[Any], None]) -> Any:
        self.guest_stop, self.error = guarded(on_guest_stop), guarded(on_error)
        return "the delegate"

    def on_queue(self, work: Callable[[], None]) -> None:
        """Run ``work`` as if on the VM's queue (a private one: the headless VMs of make)."""
        self.pool.submit(work).result()


def make(tmp_path: Path, runtime: FakeRuntime, host: HostFacts = HOST14,
         **changes: Any) -> VzSession:  # fmt: skip
    bundle = tmp_path / "example.vmdesk"
    for sub in ("logs", "nvram", "snapshots", "boot"):
        (bundle / sub).mkdir(parents=True, exist_ok=True)
    config = from_dict(
        {
            "name": "example",
            "engine": "vz",
            "arch": "aarch64",
            "boot": {"kind": "linux", "kernel": "boot/k"},
            "nics": [{"mac": "52:54:00:12:34:56"}],
            "display": {"device": "none"},
            **changes,
        }
    )  # fmt: skip  (headless: a private queue; test_vz_window.py covers the main queue)
    return VzSession(config, bundle, bundle / "run", host, "test", runtime)


def test_states_cover_every_vz_state() -> None:
    values = {value for value, _ in api_surface.STATES.values()}
    assert set(STATES) == values
    assert [state_name(v) for v in range(10)] == [
        "stopped", "running", "paused", "crashed", "starting",
        "paused", "running", "stopping", "paused", "starting",
    ]  # fmt: skip
    assert state_name(42) == "crashed"


def test_guarded_never_lets_an_exception_out(capsys: pytest.CaptureFixture[str]) -> None:
    def boom() -> None:
        raise RuntimeError("inside a callback")

    guarded(boom)()  # must not raise
    assert "inside a callback" in capsys.readouterr().err


def test_lifecycle_on_one_queue(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    session = make(tmp_path, runtime)

    async def run() -> tuple[list[str], int, list[str]]:
        assert session.launch() is None and session.launch_spec() is None
        await session.attach()
        seen = [await session.status()]
        await session.pause()
        seen.append(await session.status())
        await session.resume()
        seen.append(await session.status())
        await session.powerdown()
        runtime.on_queue(runtime.guest_stop)  # the guest powers off
        code = await session.wait()
        events = [e["event"] async for e in session.events()]
        await session.close()
        return seen, code, events

    seen, code, events = asyncio.run(run())
    assert seen == ["running", "paused", "running"]
    assert code == 0 and session.exit_reason == "" and runtime.vm.requested_stop
    assert events == ["STOP", "RESUME", "POWERDOWN", "SHUTDOWN"]
    assert runtime.vm.threads and all(t.startswith(QUEUE) for t in runtime.vm.threads)
    files = Layout(session.files.root)
    assert (files.nvram / "vz-machine-identifier.bin").read_bytes() == b"fake-machine-identifier"
    assert "vz engine (vz: test)" in files.engine_log.read_text()


def test_start_failure_is_surfaced(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    runtime.vm.start_error = "The virtual machine failed to start."
    session = make(tmp_path, runtime)

    async def run() -> None:
        session.launch()
        await session.attach()

    with pytest.raises(EngineError, match="did not start the VM: starting the VM failed: The"):
        asyncio.run(run())


def test_framework_stopping_the_vm_is_a_crash_with_its_reason(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    session = make(tmp_path, runtime)

    class OddError:  # even an error whose description fails does not escape
        def localizedDescription(self) -> str:
            raise ValueError("no description")

    async def run() -> int:
        session.launch()
        await session.attach()
        runtime.on_queue(lambda: runtime.error(fake.FakeError(runtime.fw, "internal error")))
        return await session.wait()

    assert asyncio.run(run()) == 1
    assert session.exit_reason == "Virtualization.framework stopped the VM: internal error"
    runtime.on_queue(lambda: runtime.error(OddError()))  # after the end: ignored, no raise


def test_quit_stops_at_once(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    session = make(tmp_path, runtime)

    async def run() -> int:
        session.launch()
        await session.attach()
        await session.quit()
        return await session.wait()

    assert asyncio.run(run()) == 0 and session.quit_requested
    assert runtime.vm.state == 0


def test_save_state_needs_macos_14_on_apple_silicon(tmp_path: Path) -> None:
    runtime = FakeRuntime((13, 0))
    session = make(tmp_path, runtime, HOST13)

    async def run() -> None:
        session.launch()
        await session.attach()
        await session.save_state(tmp_path / "state")

    with pytest.raises(Unsupported, match="needs macOS 14 or later on Apple silicon"):
        asyncio.run(run())


def test_save_then_restore(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    session = make(tmp_path, runtime)
    state = session.files.suspended_state

    async def save() -> None:
        session.launch()
        await session.attach()
        await session.save_state(state)

    asyncio.run(save())
    assert state.read_bytes() == b"state" and runtime.vm.state == 2

    runtime = FakeRuntime()
    again = make(tmp_path, runtime)

    async def restore() -> str:
        again.launch()
        await again.attach()
        assert again.restoring
        await again.finish_restore()
        return await again.status()

    assert asyncio.run(restore()) == "running"
    assert not state.exists()


def test_serial_console_through_pipes_and_the_log(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    session = make(tmp_path, runtime)

    async def run() -> tuple[bytes, bytes]:
        session.launch()
        await session.attach()
        guest_reads, guest_writes = session._guest_fds[:2]  # then the guest agent's end
        os.write(guest_writes, b"VMDESK-READY\n")
        got = await session.serial_read()
        await session.serial_write(b"poweroff\n")
        typed = os.read(guest_reads, 100)
        await session.close()
        return got, typed

    got, typed = asyncio.run(run())
    assert got == b"VMDESK-READY\n" and typed == b"poweroff\n"
    assert session.files.serial_log.read_bytes() == b"VMDESK-READY\n"


def test_what_vz_cannot_do_is_explained(tmp_path: Path) -> None:
    session = make(tmp_path, FakeRuntime())

    async def run(call: Callable[[], Any]) -> None:
        await call()

    for call, words in [
        (lambda: session.reboot(), "cannot reset"),
        (lambda: session.screenshot(tmp_path / "x.png"), "native window"),
        (lambda: session.save_snapshot("s"), "no snapshots of a running VM"),
    ]:
        with pytest.raises(Unsupported) as err:  # no state of the VM would make it work
            asyncio.run(run(call))
        assert words in f"{err.value.message} {err.value.hint}"


def test_handlers_take_exactly_their_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    import inspect

    from vmdesk.engines.vz.session import guarded_handler, guarded_work

    def bad_handler(error: Any) -> None:
        raise RuntimeError(f"handler got {error}")

    def bad_work() -> None:
        raise RuntimeError("work item")

    handler, work = guarded_handler(bad_handler), guarded_work(bad_work)
    assert len(inspect.signature(handler).parameters) == 1
    assert len(inspect.signature(work).parameters) == 0
    handler(None)
    work()
    err = capsys.readouterr().err
    assert "handler got None" in err and "work item" in err


def test_a_saved_state_this_mac_cannot_restore_is_set_aside(tmp_path: Path) -> None:
    runtime = FakeRuntime((13, 0))
    session = make(tmp_path, runtime, HOST13)
    state = session.files.suspended_state
    state.write_bytes(b"from a newer Mac")

    async def run() -> str:
        session.launch()
        await session.attach()
        return await session.status()

    assert asyncio.run(run()) == "running" and not session.restoring
    assert not state.exists() and state.with_name("suspended.state.failed").exists()
    assert "booting afresh" in session.files.engine_log.read_text()
