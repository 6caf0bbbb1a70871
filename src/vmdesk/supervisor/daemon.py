"""The supervisor's event loop: serves one VM while its hypervisor runs.

It attaches to the launched engine session (see launcher.py), relays the serial console to
any attached clients (the hypervisor itself writes ``logs/serial.log``), writes events to
``logs/events.jsonl``, answers the control socket, and when the hypervisor exits records
how (``logs/last-exit.json``); the launcher then removes sockets and pid files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeAlias, cast

from vmdesk.core.bundle import Bundle
from vmdesk.core.config import VMConfig
from vmdesk.core.errors import (
    Conflict,
    EngineError,
    EngineNotAnswering,
    GuestTimeout,
    Unsupported,
    VMDeskError,
)
from vmdesk.core.layout import Sockets
from vmdesk.engines.base import BalloonSession, Capabilities, Session, WindowSession
from vmdesk.supervisor import protocol
from vmdesk.supervisor import status as vmstatus
from vmdesk.supervisor.guest_channels import GuestChannels

SERIAL_KEEP = 1 << 20  # bytes of console output kept in memory for wait_serial and replays
REPLAY = 4096  # what a newly attached console client sees first
MAX_REQUEST = 128 << 20  # a control request's line: a clipboard image, base64
MIB = 1 << 20
MIN_GUEST_MEMORY = 128 * MIB  # the least a running guest is shrunk to by its balloon
QUIT_GRACE = 5.0  # seconds an engine told to quit has before it is killed
# Requests that end the VM: answered even while the supervisor winds down (see run()).
ENDING_OPS = frozenset({"stop", "kill", "suspend"})
# What would change the VM under a stop or suspend that is under way: refused meanwhile.
CHANGES_THE_VM = frozenset(
    {"pause", "reboot", "suspend", "snapshot_save", "snapshot_load", "snapshot_delete"}
)

# Each handler takes its op's request type (protocol.py); the table keys them by op.
Handler: TypeAlias = Callable[[Any], Awaitable[Any]]


class Supervisor:
    def __init__(
        self,
        bundle: Bundle,
        config: VMConfig,
        session: Session,
        report: Callable[[dict[str, Any]], None],
        launch: str = "fresh",
        engine: str = "",
        *,
        capabilities: Capabilities,
    ):
        self.bundle = bundle
        self.files = bundle.files
        self.config = config
        self.report = report
        self.launch = launch  # "replayed" when started from a saved launch plan
        self.engine = engine  # which engine runs the VM and why, for people
        self.sockets = Sockets(self.files.sockets(str(config.uuid)))
        self.session = session
        self.capabilities = capabilities  # the engine's: what this session can do
        self.guests = GuestChannels(config, self.sockets, capabilities, self.files.guest_os)
        self.handlers = self._handlers()
        self.stopping = False
        self.ending_as = ""  # "stopping" or "being suspended", for refusals meanwhile
        self.suspended = False
        self.panicked = ""
        self.started_at = time.time()
        self.serial = bytearray()
        self.serial_changed = asyncio.Condition()
        self.console_clients: set[asyncio.StreamWriter] = set()
        # stop/kill requests still to be answered when the hypervisor exits
        self.ending: set[asyncio.Task[Any]] = set()
        self.background: set[asyncio.Future[Any]] = set()  # kept until done (asyncio's rule)
        self.events_log = self.files.events.open("a", encoding="utf-8")

    # -- bookkeeping -------------------------------------------------------------------

    def event(self, name: str, data: dict[str, Any] | None = None) -> None:
        record = {"time": round(time.time(), 3), "event": name, **({"data": data} if data else {})}
        self.events_log.write(json.dumps(record) + "\n")
        self.events_log.flush()

    async def run(self) -> int:
        """Attach to the launched engine and serve until the hypervisor exits."""
        await self.session.attach()
        if self.session.restoring:
            await self.session.finish_restore()
            self.event("RESTORED")
        await self.guests.open()
        if self.session.restoring:  # the guest's clock stood still while it was saved
            self._background(self.guests.set_time())
        # QEMU logged the console from its first byte, before we connected: start from that.
        with contextlib.suppress(OSError):
            self.serial += self.files.serial_log.read_bytes()[-SERIAL_KEEP:]
        self.event(
            "STARTED",
            {
                "accel": self.session.accel_reason,
                "pid": self.session.pid,
                "launch": self.launch,
                "engine": self.engine,
            },
        )
        control = await asyncio.start_unix_server(
            self._control_client, str(self.sockets.control), limit=MAX_REQUEST
        )
        console = await asyncio.start_unix_server(self._console_client, str(self.sockets.console))
        tasks = [
            asyncio.create_task(self._pump_serial()),
            asyncio.create_task(self._pump_events()),
        ]
        self.report({"ok": True, "pid": os.getpid(), "accel": self.session.accel_reason,
                     "engine": self.engine, "resumed": self.session.restoring,
                     "protocol": protocol.PROTOCOL_VERSION})  # fmt: skip
        code = await self.session.wait()
        # Record how it ended first, so `status` is right while the rest is torn down.
        crashed = self.panicked or (
            self.session.exit_reason if code != 0 and not self.session.quit_requested else ""
        )
        ended = "suspended" if self.suspended else "crashed" if crashed else "stopped"
        vmstatus.record_exit(self.bundle.path, ended, crashed)
        if self.ending:  # let `stop`, `kill` and `suspend` callers hear that it worked
            await asyncio.wait(self.ending, timeout=5)
        control.close()
        console.close()
        for task in tasks:
            task.cancel()
        for client in list(self.console_clients):
            client.close()
        await self.guests.close()
        await self.session.close()
        if self.suspended:
            self.event("SUSPENDED")
        elif crashed:
            self.event("CRASHED", {"reason": crashed})
        else:
            self.event("STOPPED")
        return 0

    def close(self) -> None:
        self.events_log.close()

    # -- the serial console ------------------------------------------------------------

    async def _pump_serial(self) -> None:
        while True:
            chunk = await self.session.serial_read()
            if not chunk:
                return
            async with self.serial_changed:
                self.serial += chunk
                if len(self.serial) > SERIAL_KEEP:
                    del self.serial[: len(self.serial) - SERIAL_KEEP]
                self.serial_changed.notify_all()
            for client in list(self.console_clients):
                try:
                    client.write(chunk)
                except (ConnectionError, OSError):
                    self.console_clients.discard(client)

    async def _console_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(bytes(self.serial[-REPLAY:]))
        self.console_clients.add(writer)
        try:
            while data := await reader.read(4096):
                await self.session.serial_write(data)
        except (ConnectionError, OSError):
            pass
        finally:
            self.console_clients.discard(writer)
            writer.close()

    async def _serial_match(self, pattern: str, timeout: float) -> str:
        regex = re.compile(pattern.encode(), re.MULTILINE)

        async def seen() -> str:
            async with self.serial_changed:
                while True:
                    match = regex.search(self.serial)
                    if match:
                        return match.group(0).decode(errors="replace")
                    await self.serial_changed.wait()

        return await asyncio.wait_for(seen(), timeout)

    # -- events ------------------------------------------------------------------------

    async def _pump_events(self) -> None:
        async for event in self.session.events():
            name = str(event.get("event"))
            self.event(name, event.get("data"))
            await self.guests.on_event(name, event.get("data"))
            if name == "GUEST_PANICKED":
                self.panicked = "the guest kernel panicked"

    # -- the control socket: one handler per op of protocol.py -------------------------

    def _handlers(self) -> dict[str, Handler]:
        return {
            "status": self._status,
            "stop": self._stop,
            "kill": self._kill,
            "pause": self._pause,
            "resume": self._resume,
            "reboot": self._reboot,
            "screenshot": self._screenshot,
            "suspend": self._suspend,
            "window": self._window,
            "snapshot_save": self._snapshot_save,
            "snapshot_load": self._snapshot_load,
            "snapshot_delete": self._snapshot_delete,
            "wait_serial": self._wait_serial,
            "clipboard_get": self.guests.clipboard_get,
            "clipboard_set": self.guests.clipboard_set,
            "clipboard_watch": self.guests.clipboard_watch,
            "display_size": self.guests.display_size,
            "guest_info": self.guests.guest_info,
            "guest_exec": self.guests.guest_exec,
            "memory": self._memory,
        }

    async def _status(self, _request: protocol.StatusRequest) -> protocol.StatusReply:
        return await self._current()

    async def _current(self) -> protocol.StatusReply:
        if self.stopping:
            state = "stopping"
        else:
            try:
                state = await self.session.status()
            except EngineNotAnswering:
                state = "unresponsive"
            except VMDeskError:  # the connection went: the engine is ending
                state = "stopping"
        return {
            "status": state,
            "pid": os.getpid(),
            "engine_pid": self.session.pid,
            "accel": self.session.accel_reason,
            "since": self.started_at,
            "vnc": str(self.sockets.vnc) if self.sockets.vnc.exists() else None,
            "console": str(self.sockets.console),
            "protocol": protocol.PROTOCOL_VERSION,
            "agents": self.guests.state(),
        }

    async def _stop(self, request: protocol.StopRequest) -> protocol.StopReply:
        self.stopping, self.ending_as = True, "stopping"
        if not request["force"] and await self._pressed_the_button():
            # The power button first; a guest that ignores it half the time is asked
            # through its agent, then the plug is pulled.
            half = request["stop_timeout"] / 2
            if await self._ended_within(half):
                return {"forced": False}
            if await self.guests.shutdown(min(half, 5.0)) and await self._ended_within(half):
                return {"forced": False}
        await self.session.quit()
        if not await self._ended_within(QUIT_GRACE):  # a stopped or hung engine: kill it
            await self.session.kill()
            await self.session.wait()
        return {"forced": True}

    async def _pressed_the_button(self) -> bool:
        """False when the engine did not answer: nobody hears a button then."""
        try:
            await self.session.powerdown()
        except EngineNotAnswering:
            return False
        return True

    async def _ended_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self.session.wait()), seconds)
        except TimeoutError:
            return False
        return True

    def _background(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _kill(self, _request: protocol.KillRequest) -> protocol.KillReply:
        await self.session.kill()
        return {}

    async def _pause(self, _request: protocol.PauseRequest) -> protocol.PauseReply:
        await self.session.pause()
        return await self._current()

    async def _resume(self, _request: protocol.ResumeRequest) -> protocol.ResumeReply:
        await self.session.resume()
        return await self._current()

    async def _reboot(self, _request: protocol.RebootRequest) -> protocol.RebootReply:
        await self.session.reboot()
        return await self._current()

    async def _screenshot(self, request: protocol.ScreenshotRequest) -> protocol.ScreenshotReply:
        await self.session.screenshot(Path(request["path"]))
        return {"path": request["path"]}

    async def _suspend(self, _request: protocol.SuspendRequest) -> protocol.SuspendReply:
        """Save the machine state into the bundle, then end QEMU; `start` resumes it."""
        started = time.monotonic()
        self.stopping, self.ending_as = True, "being suspended"
        try:
            await self.session.save_state(self.files.suspended_state)
        except BaseException:
            self.stopping = False
            raise
        self.suspended = True
        await self.session.quit()
        await self.session.wait()
        return {"seconds": round(time.monotonic() - started, 3)}

    async def _window(self, _request: protocol.WindowRequest) -> protocol.WindowReply:
        """Show the VM's screen in a native window of this process, the one that owns the
        VM (the vz engine's sessions can; QEMU's screen is served over VNC instead)."""
        if not self.capabilities.window:
            from vmdesk.display import screen

            vnc = self.sockets.vnc if self.sockets.vnc.exists() else None
            message, hint = screen.no_window(self.config.name, vnc)
            raise Unsupported(message, hint=hint)
        # An engine with the window capability gives sessions that are WindowSessions.
        opened = await cast(WindowSession, self.session).open_window()
        return {"window": "opened" if opened else "already open"}

    async def _memory(self, request: protocol.MemoryRequest) -> protocol.MemoryReply:
        """The guest's memory now (and the host's share of it); a target moves the balloon:
        lower gives memory back to the host, up to the boot size gives it to the guest."""
        name, booted = self.config.name, self.config.memory * MIB
        if not (self.capabilities.balloon and self.config.balloon):
            raise Unsupported(
                f"VM {name!r} runs without a memory balloon",
                hint=f"stop it to change its memory (`vmdesk stop {name}`); `vmdesk edit {name}"
                " --balloon` gives it one from the next start, where its engine has one",
            )
        target = request["target"]
        if target and not MIN_GUEST_MEMORY <= target <= booted:
            raise Conflict(
                f"a running VM {name!r} can have between {MIN_GUEST_MEMORY // MIB} MiB and the "
                f"{booted // MIB} MiB it booted with",
                hint=f"for more, stop it and `vmdesk edit {name} --memory SIZE`",
            )
        guest = await cast(BalloonSession, self.session).memory(target or None)
        return {"booted": booted, "guest": guest, "host_rss": _rss(self.session.pid)}

    async def _snapshot(self, op: str, tag: str, action: Awaitable[None]) -> protocol.SnapshotReply:
        started = time.monotonic()
        await action
        self.event(op.upper(), {"tag": tag})
        return {"seconds": round(time.monotonic() - started, 3), "quiesced": False}

    async def _snapshot_save(self, request: protocol.SnapshotSaveRequest) -> protocol.SnapshotReply:
        tag = request["tag"]
        if not request["disk_only"]:  # with its memory: a frozen guest would stay frozen
            return await self._snapshot(request["op"], tag, self.session.save_snapshot(tag))
        # The disks alone: consistent when the guest's agent freezes its file systems.
        started = time.monotonic()
        async with self.guests.quiesced() as frozen:
            await self.session.save_snapshot(tag, True)
        self.event("SNAPSHOT_SAVE", {"tag": tag, "quiesced": frozen})
        return {"seconds": round(time.monotonic() - started, 3), "quiesced": frozen}

    async def _snapshot_load(self, request: protocol.SnapshotLoadRequest) -> protocol.SnapshotReply:
        load = self.session.load_snapshot(request["tag"])
        reply = await self._snapshot(request["op"], request["tag"], load)
        self._background(self.guests.after_revert())  # its clock is the snapshot's now
        return reply

    async def _snapshot_delete(
        self, request: protocol.SnapshotDeleteRequest
    ) -> protocol.SnapshotReply:
        delete = self.session.delete_snapshot(request["tag"])
        return await self._snapshot(request["op"], request["tag"], delete)

    async def _wait_serial(self, request: protocol.WaitSerialRequest) -> protocol.WaitSerialReply:
        return {"match": await self._serial_match(request["pattern"], request["wait"])}

    def _refuse_while_ending(self, op: str) -> None:
        """A stop or suspend under way: what would change the VM meanwhile is refused (a
        snapshot or a pause of a guest that is shutting down); status, stop, kill, resume
        and looking at it still work."""
        if self.stopping and op in CHANGES_THE_VM:
            name = self.config.name
            raise Conflict(
                f"VM {name!r} is {self.ending_as}, so it cannot {op.replace('_', ' ')}",
                hint=f"wait until it has ended (`vmdesk status {name}`); "
                f"`vmdesk kill {name}` ends it at once",
            )

    async def _serve(self, line: bytes) -> bytes:
        """One request line in, one reply line out; every failure becomes an error reply
        that names its class (a bad request must never take the VM down)."""
        op = "request"
        try:
            request = protocol.decode_request(line, self.config.name)
            op = request["op"]
            task = asyncio.current_task()
            if op in ENDING_OPS and task is not None:
                self.ending.add(task)
            self._refuse_while_ending(op)
            return protocol.encode_reply(await self.handlers[op](request))
        except TimeoutError:
            error: VMDeskError = GuestTimeout(
                f"{op} timed out", hint=f"see {self.files.serial_log}"
            )
        except VMDeskError as exc:
            error = exc
        except Exception as exc:
            error = EngineError(f"{type(exc).__name__}: {exc}")
        return protocol.encode_error(error)

    async def _control_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            line = await reader.readline()
        except (ConnectionError, OSError, ValueError):  # gone, or a line over the limit
            line = b""
        reply = await self._serve(line)
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(reply)
            await writer.drain()
            writer.close()


def _rss(pid: int | None) -> int | None:
    """Resident bytes of process ``pid`` (Linux's /proc), None where unknown."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
