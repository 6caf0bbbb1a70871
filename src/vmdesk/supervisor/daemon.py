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
from typing import Any

from vmdesk.core.bundle import Bundle
from vmdesk.core.config import VMConfig
from vmdesk.core.errors import VMDeskError
from vmdesk.core.layout import Sockets
from vmdesk.engines.base import Session
from vmdesk.supervisor import status as vmstatus

SERIAL_KEEP = 1 << 20  # bytes of console output kept in memory for wait_serial and replays
REPLAY = 4096  # what a newly attached console client sees first
STOP_TIMEOUT = 30.0


class Supervisor:
    def __init__(
        self,
        bundle: Bundle,
        config: VMConfig,
        session: Session,
        report: Callable[[dict[str, Any]], None],
        launch: str = "fresh",
        engine: str = "",
    ):
        self.bundle = bundle
        self.files = bundle.files
        self.config = config
        self.report = report
        self.launch = launch  # "replayed" when started from a saved launch plan
        self.engine = engine  # which engine runs the VM and why, for people
        self.sockets = Sockets(self.files.sockets(str(config.uuid)))
        self.session = session
        self.stopping = False
        self.suspended = False
        self.panicked = ""
        self.started_at = time.time()
        self.serial = bytearray()
        self.serial_changed = asyncio.Condition()
        self.console_clients: set[asyncio.StreamWriter] = set()
        # stop/kill requests still to be answered when the hypervisor exits
        self.ending: set[asyncio.Task[Any]] = set()
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
        control = await asyncio.start_unix_server(self._control_client, str(self.sockets.control))
        console = await asyncio.start_unix_server(self._console_client, str(self.sockets.console))
        tasks = [
            asyncio.create_task(self._pump_serial()),
            asyncio.create_task(self._pump_events()),
        ]
        self.report({"ok": True, "pid": os.getpid(), "accel": self.session.accel_reason,
                     "engine": self.engine, "resumed": self.session.restoring})  # fmt: skip
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

    async def _wait_serial(self, pattern: str, timeout: float) -> str:
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
            if name == "GUEST_PANICKED":
                self.panicked = "the guest kernel panicked"

    # -- the control socket ------------------------------------------------------------

    async def _status(self) -> dict[str, Any]:
        if self.stopping:
            state = "stopping"
        else:
            try:
                state = await self.session.status()
            except VMDeskError:
                state = "stopping"
        return {
            "status": state,
            "pid": os.getpid(),
            "engine_pid": self.session.pid,
            "accel": self.session.accel_reason,
            "since": self.started_at,
            "vnc": str(self.sockets.vnc) if self.sockets.vnc.exists() else None,
            "console": str(self.sockets.console),
        }

    async def _stop(self, force: bool = False, timeout: float = STOP_TIMEOUT) -> dict[str, Any]:
        self.stopping = True
        if not force:
            await self.session.powerdown()
            try:
                await asyncio.wait_for(asyncio.shield(self.session.wait()), timeout)
                return {"forced": False}
            except TimeoutError:
                pass
        await self.session.quit()
        await self.session.wait()
        return {"forced": True}

    async def _suspend(self) -> dict[str, Any]:
        """Save the machine state into the bundle, then end QEMU; `start` resumes it."""
        started = time.monotonic()
        self.stopping = True
        try:
            await self.session.save_state(self.files.suspended_state)
        except BaseException:
            self.stopping = False
            raise
        self.suspended = True
        await self.session.quit()
        await self.session.wait()
        return {"seconds": round(time.monotonic() - started, 3)}

    async def _window(self) -> dict[str, Any]:
        """Show the VM's screen in a native window of this process, the one that owns the
        VM (the vz engine's sessions can; QEMU's screen is served over VNC instead)."""
        opener = getattr(self.session, "open_window", None)
        if opener is None:
            name = self.config.name
            where = (
                f"or point a VNC viewer at the unix socket {self.sockets.vnc}"
                if self.sockets.vnc.exists()
                else f"(its VNC is off: `vmdesk edit {name} --vnc` while it is stopped)"
            )
            raise VMDeskError(
                f"VM {name!r} runs on QEMU, which shows its screen over VNC, not in a "
                "native window",
                hint=f"open its console in the web app (`vmdesk ui`, then {name} → Console), "
                + where,
            )
        reply: dict[str, Any] = await opener()
        return reply

    async def _simple(self, action: Callable[[], Awaitable[None]]) -> dict[str, Any]:
        await action()
        return await self._status()

    async def _control_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            line = await reader.readline()
            request = json.loads(line or b"{}")
            op = request.get("op")
            task = asyncio.current_task()
            if op in ("stop", "kill", "suspend") and task is not None:
                self.ending.add(task)
            if op == "status":
                reply = await self._status()
            elif op == "stop":
                reply = await self._stop(
                    bool(request.get("force")), float(request.get("stop_timeout", STOP_TIMEOUT))
                )
            elif op == "kill":
                await self.session.kill()
                reply = {}
            elif op == "pause":
                reply = await self._simple(self.session.pause)
            elif op == "resume":
                reply = await self._simple(self.session.resume)
            elif op == "reboot":
                reply = await self._simple(self.session.reboot)
            elif op == "screenshot":
                await self.session.screenshot(Path(request["path"]))
                reply = {"path": request["path"]}
            elif op == "suspend":
                reply = await self._suspend()
            elif op == "window":
                reply = await self._window()
            elif op in ("snapshot_save", "snapshot_load", "snapshot_delete"):
                tag = str(request["tag"])
                started = time.monotonic()
                if op == "snapshot_save":
                    await self.session.save_snapshot(tag, bool(request.get("disk_only")))
                elif op == "snapshot_load":
                    await self.session.load_snapshot(tag)
                else:
                    await self.session.delete_snapshot(tag)
                self.event(op.upper(), {"tag": request["tag"]})
                reply = {"seconds": round(time.monotonic() - started, 3)}
            elif op == "wait_serial":
                match = await self._wait_serial(
                    str(request["pattern"]), float(request.get("wait", 60))
                )
                reply = {"match": match}
            else:
                reply = {"ok": False, "error": f"unknown request {op!r}"}
            reply.setdefault("ok", True)
        except TimeoutError:
            reply = {"ok": False, "error": "timed out", "timeout": True}
        except VMDeskError as exc:
            reply = {"ok": False, "error": exc.message, "hint": exc.hint}
        except Exception as exc:  # a bad request must never take the VM down
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
            writer.close()
