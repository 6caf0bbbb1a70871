"""A running QEMU owned by the VM's supervisor: the process, QMP, and the serial stream.

Starting is split in two so QEMU begins booting as early as possible: :meth:`launch` is
synchronous and spawns QEMU before the event loop (and asyncio and qemu.qmp, a tenth of a
second of imports) exists; :meth:`attach` then connects QMP and the serial console.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmdesk.core.config import Share, VMConfig
from vmdesk.core.errors import EngineError, HostToolMissing, NotFound
from vmdesk.core.layout import Layout, Sockets
from vmdesk.engines.base import Capabilities
from vmdesk.engines.qemu import accel as qemu_accel
from vmdesk.engines.qemu import bridging, spawn
from vmdesk.engines.qemu import doctor as qemu_doctor
from vmdesk.engines.qemu import firmware as qemu_firmware
from vmdesk.engines.qemu.binaries import system_binary
from vmdesk.engines.qemu.vm_argv import Runtime, build_vm

if TYPE_CHECKING:
    import asyncio

    from qemu.qmp import QMPClient

QMP_CONNECT_TIMEOUT = 15.0
# virtiofsd tuning, measured against 9p by bench/share_bench.py. cache=always buys nothing
# measurable over auto here; a thread pool is off because Debian 12's virtiofsd's seccomp
# filter kills its pool threads (they call sched_getaffinity, which the filter lacks).
VIRTIOFS_CACHE = "auto"
VIRTIOFS_THREADS = 0

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


def capabilities() -> Capabilities:
    return Capabilities(
        engine="qemu",
        arches=("x86_64", "aarch64"),
        accelerators=("kvm", "hvf", "tcg"),
        usb_passthrough=sys.platform == "linux",
        share_kinds=("virtiofs", "9p") if sys.platform == "linux" else ("9p",),
        snapshots_with_ram=True,
    )


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

    @property
    def accel_reason(self) -> str:
        return self._accel_reason

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def launch_spec(self) -> dict[str, Any]:
        """What :meth:`launch` runs, as JSON data (see spawn.py) that the supervisor may cache
        and replay; choosing it has no side effects beyond creating missing UEFI variables."""
        config = self.config
        choice = qemu_accel.choose(config.arch)
        firmware = None
        if config.boot.kind == "uefi":
            firmware = qemu_firmware.for_vm(config.arch, config.boot.secure_boot, self.files.nvram)
        serial_log = self.files.serial_log if config.serial.enabled and config.serial.log else None
        virtiofsd = qemu_doctor.find_virtiofsd() if sys.platform == "linux" else None
        share_modes = {share.tag: self._share_mode(share, virtiofsd) for share in config.shares}
        taps, bridge_helper = bridging.plan(config.name, config.nics)
        runtime = Runtime(
            accel=choice.accel,
            qmp_fd=spawn.QMP_FD,
            serial_fd=spawn.SERIAL_FD if config.serial.enabled else None,
            vnc_socket=self.sockets.vnc if config.display.vnc else None,
            firmware=firmware,
            serial_log=serial_log,
            tpm_fd=spawn.TPM_FD if config.tpm else None,
            virtiofs_fds={
                share.tag: spawn.SHARE_FD + index
                for index, share in enumerate(config.shares)
                if share_modes[share.tag] == "virtiofs"
            },
            tap_fds={index: spawn.TAP_FD + index for index in taps},
            bridge_helper=bridge_helper,
        )
        binary = system_binary(config.arch)
        listen = {str(spawn.QMP_FD): str(self.sockets.qmp)}
        if config.serial.enabled:
            listen[str(spawn.SERIAL_FD)] = str(self.sockets.serial)
        watch = [str(binary), str(qemu_accel.probe_cache_path(config.arch)), "/dev/kvm"]
        if firmware is not None:
            watch += [str(firmware.code), str(firmware.vars)]
            watch += [str(path) for path in qemu_firmware.watch_paths()]
        helpers = []
        if config.tpm:
            swtpm = self._swtpm()
            helpers.append(swtpm)
            watch.append(swtpm["argv"][0])
        for index, share in enumerate(config.shares):
            if share_modes[share.tag] == "virtiofs":
                assert virtiofsd is not None
                helpers.append(self._virtiofsd(virtiofsd, index, share))
        # Installing or removing virtiofsd changes what "auto" shares become.
        watch += [str(path) for path in qemu_doctor.VIRTIOFSD_PLACES]
        if any(nic.mode == "bridged" for nic in config.nics):
            watch += [str(path) for path in bridging.BRIDGE_HELPERS]
        argv = [str(binary), *build_vm(config, self.files.root, runtime)]
        state = self.files.suspended_state
        if state.exists():  # resume a suspended VM: QEMU runs the guest once it is read
            argv += ["-incoming", "exec:cat " + shlex.quote(str(state))]
        return {
            "engine": "qemu",
            "argv": argv,
            "listen": listen,
            "rotate": [str(serial_log)] if serial_log else [],
            "remove": [str(self.sockets.vnc)],
            "log": str(self.files.engine_log),
            "helpers": helpers,
            "taps": [
                {"bridge": config.nics[i].bridge, "engine_fd": spawn.TAP_FD + i} for i in taps
            ],
            "watch": watch,
            "accel_reason": f"{choice.accel}: {choice.reason}",
            "virtiofs": sorted(runtime.virtiofs_fds),
        }

    def _swtpm(self) -> dict[str, Any]:
        """swtpm for this VM: TPM 2.0 state in the bundle's tpm/, its control channel on a
        socket pair with QEMU, and gone when QEMU closes that channel (--terminate)."""
        binary = shutil.which("swtpm")
        if binary is None:
            raise HostToolMissing(
                "swtpm (TPM emulation) was not found",
                hint="install it: `sudo apt-get install swtpm swtpm-tools` (or `make setup`), "
                f"or turn the TPM off: `vmdesk edit {self.config.name} --no-tpm`",
            )
        self.files.tpm.mkdir(exist_ok=True)
        log = self.files.logs / "swtpm.log"
        argv = [
            binary, "socket", "--tpm2", "--tpmstate", f"dir={self.files.tpm}",
            "--ctrl", f"type=unixio,clientfd={spawn.HELPER_FD}", "--terminate",
            "--log", f"file={log},level=1",
        ]  # fmt: skip
        return {"argv": argv, "log": str(log), "engine_fd": spawn.TPM_FD}

    def _share_mode(self, share: Share, virtiofsd: Path | None) -> str:
        if not os.path.isdir(share.path):
            raise NotFound(
                f"shared folder {share.tag!r}: {share.path} is not a folder on this host "
                "(any more)",
                hint=f"create it, or remove the share: `vmdesk edit {self.config.name} "
                f"--remove-share {share.tag}`",
            )
        if share.mode != "auto":
            if share.mode == "virtiofs" and virtiofsd is None:
                raise HostToolMissing(
                    f"shared folder {share.tag!r} uses VirtioFS, and virtiofsd was not found",
                    hint="install it (`sudo apt-get install qemu-system-common` on Debian 12, "
                    "the virtiofsd package elsewhere), or serve the folder over 9p: "
                    f"`vmdesk edit {self.config.name} --remove-share {share.tag} "
                    f"--share {share.path}:{share.tag}:9p`",
                )
            return share.mode
        return "virtiofs" if virtiofsd is not None else "9p"

    def _virtiofsd(self, binary: Path, index: int, share: Share) -> dict[str, Any]:
        """virtiofsd for one share, accepting QEMU on the socket it inherits. It needs
        namespaces of its own: a non-root user gets them inside a user namespace, where
        the user is root (and files the guest creates belong to the user). A read-only
        share is a read-only bind mount in a mount namespace, so the host enforces it."""
        log = self.files.logs / f"virtiofsd-{share.tag}.log"
        # virtiofsd refuses a symlink as its source; the isolation policy judged (and the
        # launch plan watches) where the path resolves to, so serve exactly that
        source = os.path.realpath(share.path)
        daemon = [
            str(binary), f"--fd={spawn.HELPER_FD}", "-o", f"source={source}",
            "-o", f"cache={VIRTIOFS_CACHE}", f"--thread-pool-size={VIRTIOFS_THREADS}",
        ]  # fmt: skip
        wrapper: list[str] = []
        if os.geteuid() != 0:
            wrapper += ["--user", "--map-root-user"]
        if share.read_only:
            wrapper += ["--mount", "--propagation", "private"]
            daemon = ["sh", "-c", 'mount --bind -o ro -- "$0" "$0" && exec "$@"', source,
                      *daemon]  # fmt: skip
        if wrapper:
            unshare = shutil.which("unshare")
            if unshare is None:
                raise HostToolMissing(
                    "unshare (util-linux) was not found; virtiofsd needs it here",
                    hint="install util-linux, or serve the folder over 9p (`:9p`)",
                )
            daemon = [unshare, *wrapper, "--", *daemon]
        return {"argv": daemon, "log": str(log), "engine_fd": spawn.SHARE_FD + index,
                "socket": "listen"}  # fmt: skip

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

    async def _execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        if self._qmp is None:
            raise EngineError("QEMU is not attached")
        try:
            return await self._qmp.execute(command, arguments)
        except Exception as exc:
            raise EngineError(f"QEMU refused {command}: {exc}", hint=_hint(str(exc))) from exc

    async def status(self) -> str:
        reply = await self._execute("query-status")
        return _STATES.get(str(reply["status"]), str(reply["status"]))

    async def pause(self) -> None:
        await self._execute("stop")

    async def resume(self) -> None:
        await self._execute("cont")

    async def reboot(self) -> None:
        await self._execute("system_reset")

    async def powerdown(self) -> None:
        await self._execute("system_powerdown")

    async def quit(self) -> None:
        self._quit_requested = True
        with contextlib.suppress(Exception):
            await self._execute("quit")

    async def kill(self) -> None:
        self._quit_requested = True
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

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
            raise EngineError(
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
            raise EngineError(f"QEMU's {command} failed: {error}", hint=_hint(str(error)))

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
        for path in (self.sockets.qmp, self.sockets.serial, self.sockets.vnc):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _hint(qemu_error: str) -> str | None:
    """What to do about the QEMU errors a user can act on."""
    if "VirtFS" in qemu_error and "mounted" in qemu_error:
        # QEMU cannot save a 9p share's open files, so it refuses while the guest has it mounted
        return (
            "unmount the 9p shared folder in the guest (`umount /its/mount/point`) and try "
            "again, snapshot the disks only (`--disk-only`), or stop the VM first"
        )
    return None
