"""A running QEMU owned by the VM's supervisor: the process, QMP, and the serial stream.

Starting is split in two so QEMU begins booting as early as possible: :meth:`launch` is
synchronous and spawns what :mod:`launch` planned before the event loop (and asyncio and
qemu.qmp, a tenth of a second of imports) exists; :meth:`attach` then connects QMP and the
serial console.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmdesk.core.config import VMConfig
from vmdesk.core.errors import Conflict, EngineError, EngineNotAnswering, QMPError
from vmdesk.core.layout import Layout, Sockets
from vmdesk.engines.qemu import launch as qemu_launch
from vmdesk.engines.qemu import spawn

if TYPE_CHECKING:
    import asyncio

    from qemu.qmp import QMPClient

QMP_CONNECT_TIMEOUT = 15.0
# Commands that save the machine's state: QEMU refuses them while a 9p share is mounted.
_SAVING = frozenset({"migrate", "snapshot-save"})
# How long QEMU may take to answer a QMP command (they all answer at once; the long work,
# snapshots and saving, runs as jobs and migrations that report by events). A QEMU that is
# stopped (SIGSTOP) or hung answers nothing: the caller hears so instead of waiting.
ANSWER = 10.0
STATUS_ANSWER = 0.8  # within the 1 s a status request waits for the supervisor
BUTTON_ANSWER = 2.0  # the power button and quit: then the plug is pulled
_UNMOUNT_9P = (
    "unmount the 9p shared folder in the guest (`umount /its/mount/point`) and try "
    "again, snapshot the disks only (`--disk-only`), or stop the VM first"
)

# QEMU run states -> ours.
_STATES = {
    "running": "running",
    "paused": "paused",
    "prelaunch": "starting",
    "inmigrate": "starting",
    "suspended": "suspended",
    "shutdown": "stopping",
    "internal-error": "crashed",
    "guest-panicked": "crashed",
    "io-error": "paused",
    "watchdog": "crashed",
    "save-vm": "paused",
    "restore-vm": "paused",
    "finish-migrate": "paused",
    "postmigrate": "paused",
}


class QemuSession:
    """Implements :class:`vmdesk.engines.base.Session` for QEMU."""

    def __init__(self, config: VMConfig, bundle_dir: Path, sockets_dir: Path) -> None:
        self.config = config
        self.files = Layout(bundle_dir)
        self.sockets = Sockets(sockets_dir)
        self._accel_reason = ""
        self.argv: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._helpers: list[subprocess.Popen[bytes]] = []
        self._jobs = 0
        self._qmp: QMPClient | None = None
        self._serial: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._quit_requested = False
        self._virtiofs: list[str] = []  # tags of the shares a virtiofsd serves
        self._9p: list[str] = []  # tags of the shares QEMU serves over 9p

    @property
    def accel_reason(self) -> str:
        return self._accel_reason

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def launch_spec(self) -> dict[str, Any]:
        """What :meth:`launch` runs, as JSON data the supervisor may cache and replay."""
        return qemu_launch.launch_spec(self.config, self.files, self.sockets)

    def launch(self) -> dict[str, Any]:
        """Spawn QEMU (synchronously, before any event loop exists); returns the spec run."""
        spec = self.launch_spec()
        self.adopt(spawn.spawn(spec), spec)
        return spec

    def adopt(self, spawned: spawn.Spawned, spec: dict[str, Any]) -> None:
        """Take over a QEMU the supervisor spawned from a cached copy of :meth:`launch_spec`."""
        self._proc = spawned.qemu
        self._helpers = spawned.helpers
        self.argv = list(spec["argv"])
        self._accel_reason = str(spec["accel_reason"])
        self._virtiofs = list(spec.get("virtiofs", []))
        self._9p = [s.tag for s in self.config.shares if s.tag not in self._virtiofs]

    async def attach(self) -> None:
        """Connect QMP and the serial console to the launched QEMU."""
        import asyncio

        from qemu.qmp import QMPClient

        assert self._proc is not None
        self._qmp = QMPClient(self.config.name)
        try:
            await asyncio.wait_for(self._qmp.connect(str(self.sockets.qmp)), QMP_CONNECT_TIMEOUT)
            if self.config.serial.enabled:
                self._serial = await asyncio.open_unix_connection(str(self.sockets.serial))
        except (TimeoutError, Exception) as exc:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await asyncio.to_thread(self._proc.wait)
            raise EngineError(
                f"QEMU did not start: {self.log_tail() or exc}",
                hint=f"the command line and QEMU's messages are in {self.files.engine_log}",
            ) from exc

    def log_tail(self, lines: int = 2) -> str:
        try:
            text = self.files.engine_log.read_text(errors="replace")
        except OSError:
            return ""
        kept = [line for line in text.splitlines() if line and not line.startswith("+ ")]
        return " | ".join(kept[-lines:])

    async def _execute(
        self, command: str, arguments: dict[str, Any] | None = None, *, within: float = ANSWER
    ) -> Any:
        """Run a QMP command: QEMU's refusal is a QMPError with QEMU's error class, a lost
        connection an EngineError, no answer ``within`` seconds EngineNotAnswering."""
        import asyncio

        from qemu.qmp import ExecuteError

        if self._qmp is None:
            raise EngineError("QEMU is not attached")
        try:
            return await asyncio.wait_for(self._qmp.execute(command, arguments), within)
        except TimeoutError:
            raise EngineNotAnswering(
                f"QEMU did not answer {command} within {within:g} s",
                hint=f"it may be stopped or hung; `vmdesk kill {self.config.name}` ends it",
            ) from None
        except ExecuteError as exc:
            raise QMPError(
                f"QEMU refused {command}: {exc}",
                hint=self._refusal_hint(command),
                error_class=exc.error_class,
            ) from exc
        except Exception as exc:
            raise EngineError(f"QEMU refused {command}: {exc}") from exc

    def _refusal_hint(self, command: str) -> str | None:
        """What to do when QEMU refuses ``command``, from what we know of the VM: it cannot
        save the open files of a mounted 9p share, so saving fails while one is mounted."""
        return _UNMOUNT_9P if command in _SAVING and self._9p else None

    async def status(self) -> str:
        reply = await self._execute("query-status", within=STATUS_ANSWER)
        return _STATES.get(str(reply["status"]), str(reply["status"]))

    async def pause(self) -> None:
        await self._execute("stop")

    async def resume(self) -> None:
        await self._execute("cont")

    async def reboot(self) -> None:
        await self._execute("system_reset")

    async def powerdown(self) -> None:
        await self._execute("system_powerdown", within=BUTTON_ANSWER)

    async def quit(self) -> None:
        self._quit_requested = True
        with contextlib.suppress(Exception):
            await self._execute("quit", within=BUTTON_ANSWER)

    async def kill(self) -> None:
        self._quit_requested = True
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    async def memory(self, target: int | None = None) -> int:
        if target is not None:
            await self._execute("balloon", {"value": target})
        reply = await self._execute("query-balloon")
        return int(reply["actual"])

    async def screenshot(self, path: Path) -> None:
        await self._execute("screendump", {"filename": str(path), "format": "png"})

    @property
    def restoring(self) -> bool:
        return "-incoming" in self.argv

    async def finish_restore(self) -> None:
        """Wait until a resumed VM runs, then drop its saved state. If QEMU cannot use the
        state, it is moved aside so that the next start boots afresh."""
        import asyncio

        state = self.files.suspended_state
        while True:  # polled: the restore may end before we were connected to see events
            try:
                reply = await self._execute("query-status")
            except EngineError:
                reply = {"status": "gone"}
            if reply["status"] not in ("inmigrate", "prelaunch", "restore-vm"):
                break
            await asyncio.sleep(0.05)
        if reply["status"] == "paused":  # it was paused for saving: carry on
            await self._execute("cont")
            reply["status"] = "running"
        if reply["status"] == "running":
            state.unlink()
            return
        state.replace(state.with_name(state.name + ".failed"))
        raise EngineError(
            f"QEMU could not resume the VM from its saved state ({reply['status']})",
            hint=f"the state was kept as {state.name}.failed; the next start boots afresh",
        )

    async def save_state(self, path: Path) -> None:
        """Pause the guest and write its whole machine state to ``path``. QEMU writes it
        through a file descriptor we pass it (a `migrate` to ``fd:``), so the file is
        complete when QEMU reports the migration completed."""
        from qemu.qmp import EventListener

        if self._qmp is None:
            raise EngineError("QEMU is not attached")
        self._refuse_unsaveable(
            "suspend the VM", f"shut it down (`vmdesk stop {self.config.name}`)"
        )
        partial = path.with_name(path.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            events = {"capabilities": [{"capability": "events", "state": True}]}
            await self._execute("migrate-set-capabilities", events)
            self._qmp.send_fd_scm(fd)
            await self._execute("getfd", {"fdname": "vmdesk-suspend"})
            await self._execute("stop")
            listener = EventListener("MIGRATION")
            with self._qmp.listen(listener):
                try:
                    await self._execute("migrate", {"uri": "fd:vmdesk-suspend"})
                except EngineError:  # refused up front (e.g. a mounted 9p share)
                    await self._execute("closefd", {"fdname": "vmdesk-suspend"})
                    await self._execute("cont")
                    raise
                async for event in listener:
                    data = event.get("data")
                    status = data.get("status") if isinstance(data, dict) else None
                    if status == "completed":
                        break
                    if status in ("failed", "cancelled"):
                        await self._execute("cont")  # the guest runs on as before
                        raise EngineError(
                            "QEMU could not save the VM's state",
                            hint=f"see {self.files.engine_log}; the VM keeps running",
                        )
            os.fsync(fd)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        partial.replace(path)

    def _disk_nodes(self) -> list[str]:
        """The format nodes of the VM's disks (vm_argv names them disk0, disk1, ...)."""
        return [f"disk{index}" for index in range(len(self.config.disks))]

    def _refuse_unsaveable(self, what: str, instead: str) -> None:
        """QEMU 7.2 cannot save a machine with a vhost-user-fs device (virtiofsd holds part
        of its state): say so before trying, with what the user can do instead."""
        if self._virtiofs:
            shares = ", ".join(repr(tag) for tag in self._virtiofs)
            raise Conflict(
                f"cannot {what}: the VirtioFS shared folder(s) {shares} keep QEMU from saving "
                "the VM's memory",
                hint=f"{instead}; or serve the folder over 9p, which saves while the guest has "
                f"it unmounted (`vmdesk edit {self.config.name} --remove-share TAG "
                "--share PATH:TAG:9p`)",
            )

    async def save_snapshot(self, tag: str, disk_only: bool = False) -> None:
        """Snapshot RAM, device state and every disk of the running VM as ``tag`` (the
        machine state goes into the first disk, as QEMU's savevm does); with ``disk_only``
        just the disks, as they are at this instant, in one transaction."""
        nodes = self._disk_nodes()
        if disk_only:
            actions = [
                {"type": "blockdev-snapshot-internal-sync", "data": {"device": n, "name": tag}}
                for n in nodes
            ]
            await self._execute("transaction", {"actions": actions})
            return
        name = self.config.name
        self._refuse_unsaveable(
            "snapshot the running VM with its memory",
            f"snapshot its disks only (`vmdesk snapshot create {name} SNAP --disk-only`), "
            f"or stop it first (`vmdesk stop {name}`)",
        )
        await self._job("snapshot-save", {"tag": tag, "vmstate": nodes[0], "devices": nodes})

    async def load_snapshot(self, tag: str) -> None:
        nodes = self._disk_nodes()
        await self._job("snapshot-load", {"tag": tag, "vmstate": nodes[0], "devices": nodes})

    async def delete_snapshot(self, tag: str) -> None:
        await self._job("snapshot-delete", {"tag": tag, "devices": self._disk_nodes()})

    async def _job(self, command: str, arguments: dict[str, Any]) -> None:
        """Run a QMP job to its end: wait for its JOB_STATUS_CHANGE events, then read how
        it ended from query-jobs (events do not carry errors) and dismiss it."""
        from qemu.qmp import EventListener

        if self._qmp is None:
            raise EngineError("QEMU is not attached")
        self._jobs += 1
        job_id = f"vmdesk-{command}-{self._jobs}"
        listener = EventListener("JOB_STATUS_CHANGE")
        with self._qmp.listen(listener):
            await self._execute(command, {"job-id": job_id, **arguments})
            async for event in listener:
                data = event.get("data")
                if not isinstance(data, dict) or data.get("id") != job_id:
                    continue
                if data.get("status") == "concluded":
                    break
        jobs = await self._execute("query-jobs")
        error = next((j.get("error") for j in jobs if j.get("id") == job_id), None)
        await self._execute("job-dismiss", {"id": job_id})
        if error:
            raise EngineError(f"QEMU's {command} failed: {error}", hint=self._refusal_hint(command))

    async def wait(self) -> int:
        import asyncio

        assert self._proc is not None
        return await asyncio.to_thread(self._proc.wait)

    @property
    def exit_reason(self) -> str:
        """Why QEMU exited, or "" for an orderly exit."""
        code = None if self._proc is None else self._proc.poll()
        if code is None or code == 0:
            return ""
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
            return f"QEMU was killed by {name}"
        tail = self.log_tail()
        return f"QEMU exited with status {code}" + (f": {tail}" if tail else "")

    @property
    def quit_requested(self) -> bool:
        return self._quit_requested

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        if self._qmp is None:
            return
        async for event in self._qmp.events:
            yield dict(event)

    async def serial_read(self) -> bytes:
        if self._serial is None:
            return b""
        try:
            return await self._serial[0].read(65536)
        except (ConnectionError, OSError):
            return b""

    async def serial_write(self, data: bytes) -> None:
        if self._serial is not None:
            self._serial[1].write(data)
            with contextlib.suppress(ConnectionError, OSError):
                await self._serial[1].drain()

    async def close(self) -> None:
        import asyncio

        if self._serial is not None:
            self._serial[1].close()
            self._serial = None
        if self._qmp is not None:
            with contextlib.suppress(Exception, EOFError):  # EOF after quit is expected
                await self._qmp.disconnect()
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            self._proc.wait()
        for helper in reversed(self._helpers):
            try:  # swtpm saves its state and exits once QEMU is gone
                await asyncio.to_thread(helper.wait, 5.0)
            except subprocess.TimeoutExpired:
                helper.kill()
                helper.wait()
        ours = (self.sockets.qmp, self.sockets.serial, self.sockets.vnc,
                self.sockets.guest_agent, self.sockets.spice_agent)  # fmt: skip
        for path in ours:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
