"""A VM running on Virtualization.framework inside its supervisor process.

The VM lives in this process (there is no hypervisor process to spawn), on one serial
dispatch queue: the ``VZVirtualMachine`` is created there and every call to it is sent
there (:meth:`VzSession._on_queue`); completion handlers and delegate callbacks come back
on it. A headless VM gets a private queue. A VM with a display gets the main queue, so its
screen can be shown in a native window (AppKit, main thread only; see
:mod:`vmdesk.engines.vz.window` for why the VM must then be on the main queue too); the
session then pumps the main run loop from the supervisor's asyncio loop, which runs on the
main thread. Results reach the supervisor's asyncio loop through ``concurrent.futures``
futures, and each callback is wrapped by :func:`guarded`, because a Python exception escaping
into Objective-C would take the whole process down.

The runtime (PyObjC's modules, the queue, the delegate) is injected, so this logic is
tested on Linux with the recording fake; on a Mac it is :mod:`vmdesk.engines.vz.macos`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import socket
import sys
import traceback
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from vmdesk.core.config import VMConfig
from vmdesk.core.errors import EngineError, Unsupported
from vmdesk.core.layout import Layout, Sockets
from vmdesk.engines.vz import translate as vz_translate
from vmdesk.engines.vz import window as vz_window
from vmdesk.engines.vz.capabilities import HostFacts
from vmdesk.integration.relay import Relay

if TYPE_CHECKING:
    import asyncio

    from vmdesk.engines.base import WindowSession

T = TypeVar("T")

PUMP_INTERVAL = 0.01  # seconds between turns of the main run loop (a VM on the main queue)

# VZVirtualMachineState (values confirmed by PyObjC's test_vzvirtualmachine.py) -> ours.
STATES = {
    0: "stopped",  # Stopped
    1: "running",  # Running
    2: "paused",  # Paused
    3: "crashed",  # Error
    4: "starting",  # Starting
    5: "paused",  # Pausing
    6: "running",  # Resuming
    7: "stopping",  # Stopping
    8: "paused",  # Saving (the VM is paused to be saved)
    9: "starting",  # Restoring
}


def state_name(value: int) -> str:
    return STATES.get(int(value), "crashed")


def _report(exc: BaseException) -> None:
    """Last resort for an exception inside an ObjC callback: say so, never raise."""
    with contextlib.suppress(BaseException):
        sys.stderr.write("vmdesk: error in a Virtualization.framework callback:\n")
        sys.stderr.write("".join(traceback.format_exception(exc)))


def guarded(function: Callable[..., Any]) -> Callable[..., None]:
    """``function`` made safe to call from Objective-C: any exception is reported, not raised."""

    @functools.wraps(function)
    def wrapper(*args: Any) -> None:
        try:
            function(*args)
        except BaseException as exc:
            _report(exc)

    return wrapper


def guarded_handler(function: Callable[[Any], None]) -> Callable[[Any], None]:
    """A completion handler (one argument, the NSError or None) that never raises; an
    explicit parameter, as PyObjC matches a block's arguments against the callable's."""

    def handler(error: Any) -> None:
        try:
            function(error)
        except BaseException as exc:
            _report(exc)

    return handler


def guarded_work(function: Callable[[], None]) -> Callable[[], None]:
    """A dispatch work item (no arguments) that never raises."""

    def work() -> None:
        try:
            function()
        except BaseException as exc:
            _report(exc)

    return work


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)


def error_text(error: Any) -> str:
    if error is None:
        return "unknown error"
    try:
        return str(error.localizedDescription())
    except Exception:
        return str(error)


def _settle(future: concurrent.futures.Future[Any], result: Any = None,
            error: BaseException | None = None) -> None:  # fmt: skip
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class Runtime(Protocol):
    fw: Any

    def queue(self) -> Any:
        """A new private serial queue."""

    def main_queue(self) -> Any:
        """The main queue (drained by the main run loop, which :meth:`VzSession` pumps)."""

    def dispatch(self, queue: Any, work: Callable[[], None]) -> None: ...

    def delegate(
        self, on_guest_stop: Callable[[], None], on_error: Callable[[Any], None]
    ) -> Any: ...


class VzSession:
    """Implements :class:`vmdesk.engines.base.Session` on Virtualization.framework."""

    def __init__(
        self,
        config: VMConfig,
        bundle_dir: Path,
        sockets_dir: Path,
        host: HostFacts,
        reason: str = "",
        runtime: Runtime | None = None,
    ) -> None:
        self.config = config
        self.files = Layout(bundle_dir)
        self.sockets = Sockets(sockets_dir)
        self.host = host
        self.reason = reason
        self._runtime = runtime
        self._queue: Any = None
        self._vm: Any = None
        self._configuration: Any = None
        self._delegate: Any = None
        self._started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._exited: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._exit_reason = ""
        self._quit_requested = False
        self._restoring = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: asyncio.Queue[dict[str, Any] | None] | None = None
        self._pending_events: list[dict[str, Any]] = []
        self._serial_in: int | None = None  # we write what the guest reads
        self._serial_out: int | None = None  # we read what the guest writes
        self._guest_fds: list[int] = []
        self._serial_log: Any = None
        self.notes: list[str] = []
        self._main = False  # the VM is on the main queue (it has a display)
        self._pump_task: asyncio.Task[None] | None = None
        self._app: Any = None  # NSApp, once a window was opened
        self._window: Any = None
        # the guest agent's channel: our end of the socket pair, relayed to its socket
        self._agent_channel: socket.socket | None = None
        self._agent_relay: Relay | None = None

    # -- properties the supervisor reads ----------------------------------------------

    @property
    def accel_reason(self) -> str:
        return f"vz: {self.reason}" if self.reason else "vz"

    @property
    def pid(self) -> int | None:
        return os.getpid()  # the VM runs inside the supervisor

    @property
    def exit_reason(self) -> str:
        return self._exit_reason

    @property
    def quit_requested(self) -> bool:
        return self._quit_requested

    @property
    def restoring(self) -> bool:
        return self._restoring

    # -- the queue ----------------------------------------------------------------------

    def _on_queue(self, work: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``work`` on the VM's queue; its result (or exception) in a future."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                _settle(future, work())
            except BaseException as exc:
                _settle(future, error=exc)

        assert self._runtime is not None
        self._runtime.dispatch(self._queue, guarded_work(run))
        return future

    def _completion(
        self, what: str
    ) -> tuple[Callable[[Any], None], concurrent.futures.Future[None]]:
        """A completion handler for a VZ call and the future it settles."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()

        def handler(error: Any) -> None:
            if error is None:
                _settle(future)
            else:
                _settle(future, error=EngineError(f"{what} failed: {error_text(error)}"))

        return guarded_handler(handler), future

    async def _await_queue(self, work: Callable[[], Any]) -> Any:
        import asyncio

        return await asyncio.wrap_future(self._on_queue(work))

    async def _vz_call(self, what: str, call: Callable[[Callable[[Any], None]], None]) -> None:
        """``call(handler)`` on the queue, then wait for the completion handler."""
        import asyncio

        handler, done = self._completion(what)
        await self._await_queue(lambda: call(handler))
        await asyncio.wrap_future(done)

    # -- events, from any thread ---------------------------------------------------------

    def _emit(self, name: str, data: dict[str, Any] | None = None) -> None:
        event = {"event": name, **({"data": data} if data else {})}
        loop, queue = self._loop, self._events
        if loop is None or queue is None:
            self._pending_events.append(event)
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(queue.put_nowait, event)

    def _ended(self, code: int, reason: str = "") -> None:
        if self._exited.done():
            return
        self._exit_reason = reason
        _settle(self._exited, code)
        loop, queue = self._loop, self._events
        if loop is not None and queue is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, None)

    def _guest_stopped(self) -> None:
        self._emit("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"})
        self._ended(0)

    def _stopped_with_error(self, error: Any) -> None:
        text = error_text(error)
        self._emit("VZ_ERROR", {"message": text})
        self._ended(1, f"Virtualization.framework stopped the VM: {text}")

    # -- starting -------------------------------------------------------------------------

    def launch_spec(self) -> dict[str, Any] | None:
        return None  # nothing to replay: the VM is built in this process

    def adopt(self, process: Any, spec: dict[str, Any]) -> None:
        raise EngineError("the vz engine has no process to adopt")

    def _inputs(self) -> vz_translate.Inputs:
        stored = vz_translate.machine_id_path(self.files.root)
        serial = None
        if self.config.serial.enabled:
            guest_reads, self._serial_in = os.pipe()
            self._serial_out, guest_writes = os.pipe()
            self._guest_fds = [guest_reads, guest_writes]
            os.set_blocking(self._serial_out, False)
            serial = (guest_reads, guest_writes)
        agent_fd = None
        if self.config.guest_agent:
            self._agent_channel, guest_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            agent_fd = guest_end.detach()  # the VM's file handle reads and writes it
            self._guest_fds.append(agent_fd)
        return vz_translate.Inputs(
            serial_fds=serial,
            guest_agent_fd=agent_fd,
            machine_identifier=stored.read_bytes() if stored.exists() else None,
            nvram_exists=vz_translate.efi_vars_path(self.files.root).exists(),
        )

    def launch(self) -> dict[str, Any] | None:
        """Build, validate and start the VM (on its queue); :meth:`attach` waits for it."""
        if self._runtime is None:
            from vmdesk.engines.vz import macos

            self._runtime = macos.load()
        runtime = self._runtime
        self.files.nvram.mkdir(exist_ok=True)
        inputs = self._inputs()
        result = vz_translate.translate(self.config, self.files.root, runtime.fw, self.host, inputs)
        if result.machine_identifier != inputs.machine_identifier:
            _write_atomic(vz_translate.machine_id_path(self.files.root), result.machine_identifier)
        self.notes = result.notes
        self._configuration = result.configuration
        if self.config.serial.enabled and self.config.serial.log:
            self._serial_log = open(self.files.serial_log, "wb")  # noqa: SIM115
        state = self.files.suspended_state
        self._restoring = state.exists() and self.host.save_restore
        if state.exists() and not self._restoring:  # e.g. a bundle copied to an older Mac
            state.replace(state.with_name(state.name + ".failed"))
            self.notes.append(
                "the saved state needs macOS 14 or later on Apple silicon: booting afresh "
                f"(kept as {state.name}.failed)"
            )
        self._main = self.config.display.device != "none"
        with open(self.files.engine_log, "a", encoding="utf-8") as log:
            log.write(f"+ vz engine ({self.accel_reason})\n")
            queue = "the main queue (its screen can open in a window)" if self._main else (
                "a private queue (no display)")  # fmt: skip
            log.write(f"note: the VM runs on {queue}\n")
            for note in self.notes:
                log.write(f"note: {note}\n")
        self._queue = runtime.main_queue() if self._main else runtime.queue()
        self._delegate = runtime.delegate(self._guest_stopped, self._stopped_with_error)
        handler, self._started = self._completion(
            "restoring the saved state" if self._restoring else "starting the VM"
        )
        fw = runtime.fw

        def create() -> None:
            vm = fw.VZVirtualMachine.alloc().initWithConfiguration_queue_(
                self._configuration, self._queue
            )
            vm.setDelegate_(self._delegate)
            self._vm = vm
            if self._restoring:
                url = fw.NSURL.fileURLWithPath_(str(state))
                vm.restoreMachineStateFromURL_completionHandler_(url, handler)
            else:
                vm.startWithCompletionHandler_(handler)

        created = self._on_queue(create)

        def failed(done: concurrent.futures.Future[None]) -> None:
            if done.exception() is not None:
                _settle(self._started, error=done.exception())

        created.add_done_callback(failed)
        return None

    async def attach(self) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._events = asyncio.Queue()
        for event in self._pending_events:
            self._events.put_nowait(event)
        self._pending_events.clear()
        if self._exited.done():
            self._events.put_nowait(None)
        if self._main and self._pump_task is None:  # before anything waits on the VM
            self._pump_task = asyncio.create_task(self._pump())
        if self._agent_channel is not None and self._agent_relay is None:
            self._agent_relay = Relay(self.sockets.guest_agent, self._agent_channel)
            await self._agent_relay.start()
        if self._restoring:
            return  # finish_restore waits for the restore
        try:
            await asyncio.wrap_future(self._started)
        except EngineError as exc:
            self._ended(1, exc.message)
            raise EngineError(
                f"Virtualization.framework did not start the VM: {exc.message}",
                hint=f"see {self.files.engine_log}; `vmdesk doctor` checks this Mac",
            ) from exc

    async def finish_restore(self) -> None:
        import asyncio

        state = self.files.suspended_state
        try:
            await asyncio.wrap_future(self._started)
            await self._vz_call(
                "resuming the restored VM", lambda h: self._vm.resumeWithCompletionHandler_(h)
            )
        except EngineError as exc:
            state.replace(state.with_name(state.name + ".failed"))
            self._ended(1, exc.message)
            raise EngineError(
                f"the VM could not be resumed from its saved state: {exc.message}",
                hint=f"the state was kept as {state.name}.failed; the next start boots afresh",
            ) from exc
        state.unlink()
        self._emit("RESUME")

    # -- the main run loop and the window --------------------------------------------------

    async def _pump(self) -> None:
        """Turn the main run loop while the VM is on the main queue (see window.py)."""
        import asyncio

        fw = self._runtime_fw()
        while True:
            try:
                vz_window.pump(fw, self._app)
            except Exception as exc:  # never stop pumping: the VM's work runs in here
                _report(exc)
            await asyncio.sleep(PUMP_INTERVAL)

    async def open_window(self) -> bool:
        """Show the VM's screen in a native window of this process (the supervisor): True
        when a window opened, False when the open one was brought to the front."""
        name = self.config.name
        if self.config.display.device == "none":
            raise EngineError(
                f"VM {name!r} has no display to show",
                hint=f"give it one (`vmdesk edit {name} --display virtio-gpu`), then restart "
                "it; its serial console works meanwhile (`vmdesk console NAME`)",
            )
        if "SSH_CONNECTION" in os.environ:
            raise EngineError(
                f"VM {name!r} was started from an SSH session, which macOS gives no access "
                "to the screen, so it cannot open a window",
                hint=f"stop it and start it from a terminal on the Mac's own desktop; "
                f"its serial console works over SSH (`vmdesk console {name}`)",
            )
        vm = self._need_vm()
        fw = self._runtime_fw()
        width, height = self.config.display.width, self.config.display.height

        def show() -> bool:
            if self._window is not None:
                return not vz_window.show_again(self._app, self._window)
            self._app, self._window = vz_window.open_window(
                fw, vm, f"{name} — VM-Desk", width, height
            )
            return True

        opened = bool(await self._await_queue(show))  # the main queue: the main thread
        self._emit("WINDOW", {"opened": opened})
        return opened

    # -- lifecycle ------------------------------------------------------------------------

    def _need_vm(self) -> Any:
        if self._vm is None:
            raise EngineError("the VM is not running")
        return self._vm

    async def status(self) -> str:
        vm = self._need_vm()
        return state_name(await self._await_queue(lambda: int(vm.state())))

    async def pause(self) -> None:
        vm = self._need_vm()
        await self._vz_call("pausing the VM", lambda h: vm.pauseWithCompletionHandler_(h))
        self._emit("STOP")

    async def resume(self) -> None:
        vm = self._need_vm()
        await self._vz_call("resuming the VM", lambda h: vm.resumeWithCompletionHandler_(h))
        self._emit("RESUME")

    async def reboot(self) -> None:
        raise Unsupported(
            "the vz engine cannot reset a VM (Virtualization.framework has no reset)",
            hint=f"stop and start it: `vmdesk stop {self.config.name} && vmdesk start "
            f"{self.config.name}`",
        )

    async def powerdown(self) -> None:
        """Ask the guest to stop (the power button)."""
        vm = self._need_vm()

        def request() -> None:
            if not vm.canRequestStop():
                raise EngineError("the VM cannot be asked to stop in its current state")
            ok, error = vm.requestStopWithError_(None)
            if not ok:
                raise EngineError(f"asking the guest to stop failed: {error_text(error)}")

        await self._await_queue(request)
        self._emit("POWERDOWN")

    async def quit(self) -> None:
        """Stop at once (VZ's stop: the guest gets no say)."""
        self._quit_requested = True
        vm = self._vm
        if vm is None or self._exited.done():
            self._ended(0)
            return

        def stop(handler: Callable[[Any], None]) -> None:
            if vm.canStop():
                vm.stopWithCompletionHandler_(handler)
            else:
                handler(None)

        try:
            await self._vz_call("stopping the VM", stop)
        finally:
            self._ended(0)

    async def kill(self) -> None:
        await self.quit()  # the VM is in this process: stopping it is the hardest stop

    async def screenshot(self, path: Path) -> None:
        raise Unsupported(
            "the vz engine takes no screenshots",
            hint="VZ shows the screen only in a native window: `vmdesk display "
            f"{self.config.name} --window`; the serial console works too (`vmdesk console "
            f"{self.config.name}`)",
        )

    async def save_snapshot(self, tag: str, disk_only: bool = False) -> None:
        raise Unsupported(
            "the vz engine has no snapshots of a running VM",
            hint=f"stop it first (`vmdesk stop {self.config.name}`); snapshots of a stopped "
            "VM's disks work on any engine",
        )

    async def load_snapshot(self, tag: str) -> None:
        await self.save_snapshot(tag)

    async def delete_snapshot(self, tag: str) -> None:
        await self.save_snapshot(tag)

    async def save_state(self, path: Path) -> None:
        """Pause, then write the machine state (macOS 14+ on Apple silicon only)."""
        if not self.host.save_restore:
            raise Unsupported(
                "saving a VM's state on vz needs macOS 14 or later on Apple silicon",
                hint=f"shut it down instead: `vmdesk stop {self.config.name}`",
            )
        ok, error = self._configuration.validateSaveRestoreSupportWithError_(None)
        if not ok:
            raise EngineError(f"this VM's state cannot be saved: {error_text(error)}")
        vm = self._need_vm()
        fw = self._runtime_fw()
        partial = path.with_name(path.name + ".partial")
        await self.pause()
        try:
            url = fw.NSURL.fileURLWithPath_(str(partial))
            await self._vz_call(
                "saving the VM's state",
                lambda h: vm.saveMachineStateToURL_completionHandler_(url, h),
            )
        except BaseException:
            partial.unlink(missing_ok=True)
            await self.resume()
            raise
        partial.replace(path)

    def _runtime_fw(self) -> Any:
        assert self._runtime is not None
        return self._runtime.fw

    async def wait(self) -> int:
        import asyncio

        return await asyncio.wrap_future(self._exited)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        if self._events is None:
            return
        while (event := await self._events.get()) is not None:
            yield event

    # -- the serial console ---------------------------------------------------------------

    async def serial_read(self) -> bytes:
        import asyncio

        fd = self._serial_out
        if fd is None:
            return b""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_reader(fd, _wake, ready)
                try:
                    await ready
                finally:
                    loop.remove_reader(fd)
                continue
            except OSError:
                return b""
            if data and self._serial_log is not None:
                self._serial_log.write(data)
                self._serial_log.flush()
            return data

    async def serial_write(self, data: bytes) -> None:
        if self._serial_in is not None:
            with contextlib.suppress(OSError):
                os.write(self._serial_in, data)

    async def close(self) -> None:
        if self._agent_relay is not None:
            await self._agent_relay.close()
            self._agent_relay = None
        for fd in (self._serial_in, self._serial_out, *self._guest_fds):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._serial_in = self._serial_out = None
        self._guest_fds = []
        if self._serial_log is not None:
            self._serial_log.close()
            self._serial_log = None
        held, self._vm = [self._vm, self._window], None
        window, self._window = self._window, None
        if held[0] is not None and self._runtime is not None:

            def release() -> None:  # the last reference to the VM goes on its own queue
                if window is not None:
                    vz_window.close(window)
                held.clear()

            self._runtime.dispatch(self._queue, guarded_work(release))
        if self._pump_task is not None:
            self._pump_task.cancel()
            self._pump_task = None
            with contextlib.suppress(Exception):  # one last turn: run release() above
                vz_window.pump(self._runtime_fw(), self._app)


if TYPE_CHECKING:  # vz's capabilities say window: its sessions must be WindowSessions

    def _gives_windows(session: VzSession) -> WindowSession:
        return session
