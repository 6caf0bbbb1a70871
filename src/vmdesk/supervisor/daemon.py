"""The supervisor process: holds the bundle lock while its VM runs.

It starts the engine session, copies the serial console to ``logs/serial.log`` and to any
attached console clients, writes events to ``logs/events.jsonl``, answers the control
socket, and when the hypervisor exits records how (``logs/last-exit.json``), removes its
sockets and pid files, and exits, leaving the bundle clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from vmdesk.core import isolation
from vmdesk.core.bundle import Bundle
from vmdesk.core.config import VMConfig
from vmdesk.core.errors import Conflict, VMDeskError
from vmdesk.core.layout import Sockets
from vmdesk.supervisor import status as vmstatus

SERIAL_KEEP = 1 << 20  # bytes of console output kept in memory for wait_serial and replays
REPLAY = 4096  # what a newly attached console client sees first
STOP_TIMEOUT = 30.0


class Supervisor:
    def __init__(self, bundle: Bundle, config: VMConfig, report: Callable[[dict[str, Any]], None]):
        from vmdesk.engines.registry import engine_for

        self.bundle = bundle
        self.files = bundle.files
        self.config = config
        self.report = report
        self.sockets = Sockets(self.files.sockets(str(config.uuid)))
        self.session = engine_for(config).session(config, bundle.path, self.sockets.dir)
        self.stopping = False
        self.panicked = ""
        self.started_at = time.time()
        self.serial = bytearray()
        self.serial_changed = asyncio.Condition()
        self.console_clients: set[asyncio.StreamWriter] = set()
        self.events_log = self.files.events.open("a", encoding="utf-8")
        self.serial_log = self.files.serial_log.open("ab")

    # -- bookkeeping -------------------------------------------------------------------

    def event(self, name: str, data: dict[str, Any] | None = None) -> None:
        record = {"time": round(time.time(), 3), "event": name, **({"data": data} if data else {})}
        self.events_log.write(json.dumps(record) + "\n")
        self.events_log.flush()

    async def run(self) -> int:
        self.sockets.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.files.supervisor_pid.write_text(f"{os.getpid()}\n")
        await self.session.start()
        self.files.engine_pid.write_text(f"{self.session.pid}\n")
        self.event("STARTED", {"accel": self.session.accel_reason, "pid": self.session.pid})
        control = await asyncio.start_unix_server(self._control_client, str(self.sockets.control))
        console = await asyncio.start_unix_server(self._console_client, str(self.sockets.console))
        tasks = [
            asyncio.create_task(self._pump_serial()),
            asyncio.create_task(self._pump_events()),
        ]
        self.report({"ok": True, "pid": os.getpid(), "accel": self.session.accel_reason})
        code = await self.session.wait()
        # Record how it ended first, so `status` is right while the rest is torn down.
        crashed = self.panicked or (
            self.session.exit_reason if code != 0 and not self.session.quit_requested else ""
        )
        vmstatus.record_exit(self.bundle.path, "crashed" if crashed else "stopped", crashed)
        control.close()
        console.close()
        for task in tasks:
            task.cancel()
        for client in list(self.console_clients):
            client.close()
        await self.session.close()
        if crashed:
            self.event("CRASHED", {"reason": crashed})
        else:
            self.event("STOPPED")
        return 0

    def close(self) -> None:
        self.events_log.close()
        self.serial_log.close()
        for path in (self.files.supervisor_pid, self.files.engine_pid, *self.sockets.all()):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if self.sockets.dir != self.files.run:
            with contextlib.suppress(OSError):
                self.sockets.dir.rmdir()

    # -- the serial console ------------------------------------------------------------

    async def _pump_serial(self) -> None:
        while True:
            chunk = await self.session.serial_read()
            if not chunk:
                return
            self.serial_log.write(chunk)
            self.serial_log.flush()
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


def _reporter(ready_fd: int | None) -> Callable[[dict[str, Any]], None]:
    """Tell the starting CLI, once, whether the VM runs (a pipe it reads)."""
    sent = False

    def report(message: dict[str, Any]) -> None:
        nonlocal sent
        if sent or ready_fd is None:
            return
        sent = True
        with contextlib.suppress(OSError):
            os.write(ready_fd, json.dumps(message).encode() + b"\n")
            os.close(ready_fd)

    return report


def main(args: list[str]) -> int:
    bundle = Bundle(Path(args[0]))
    ready_fd = int(args[args.index("--ready-fd") + 1]) if "--ready-fd" in args else None
    report = _reporter(ready_fd)
    try:
        lock = bundle.lock(f"running the VM (supervisor pid {os.getpid()})")
        lock.__enter__()
    except Conflict as exc:
        report({"ok": False, "already_running": True, "error": exc.message})
        return 0
    supervisor: Supervisor | None = None
    try:
        vmstatus.clean_stale(bundle.path)
        with contextlib.suppress(FileNotFoundError):
            bundle.files.last_exit.unlink()
        config = bundle.load()
        isolation.enforce(config, bundle.path)
        supervisor = Supervisor(bundle, config, report)
        return asyncio.run(supervisor.run())
    except VMDeskError as exc:
        vmstatus.record_exit(bundle.path, "failed", exc.message, exc.hint or "")
        report({"ok": False, "error": exc.message, "hint": exc.hint})
        return 1
    except BaseException as exc:
        reason = f"the supervisor failed: {type(exc).__name__}: {exc}"
        vmstatus.record_exit(bundle.path, "failed", reason)
        report({"ok": False, "error": reason})
        print(reason, file=sys.stderr)
        raise
    finally:
        if supervisor is not None:
            supervisor.close()
        lock.__exit__(None, None, None)
