"""Running one throwaway QEMU (the KVM probe, the tiny-image tests, the benchmarks): the
serial console, QMP, and a clean teardown.

It is spawned like every VM, through :mod:`spawn` (sockets bound first and inherited at
fixed fds, QEMU killed if we die), from a :mod:`boot_argv` command line. Used as a context
manager: on leaving it the guest is stopped (``quit`` over QMP, then SIGKILL if QEMU does
not go) and the runtime directory is removed, whatever happened.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from qemu.qmp.legacy import QEMUMonitorProtocol

from vmdesk.core.errors import EngineError, GuestTimeout, QMPError
from vmdesk.engines.qemu import boot_argv, spawn
from vmdesk.engines.qemu.binaries import system_binary

LineCallback = Callable[[str], None]


class SerialConsole:
    """The guest's serial console: everything it printed, and a way to type into it."""

    def __init__(self, sock: socket.socket, on_line: LineCallback | None) -> None:
        self._sock = sock
        self._on_line = on_line
        self._text = ""
        self._pending = ""
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, name="serial-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                chunk = b""
            with self._cond:
                if not chunk:
                    self._closed = True
                    self._cond.notify_all()
                    return
                text = chunk.decode("utf-8", errors="replace").replace("\r", "")
                self._text += text
                self._cond.notify_all()
            if self._on_line is not None:
                self._pending += text
                *lines, self._pending = self._pending.split("\n")
                for line in lines:
                    self._on_line(line)

    @property
    def text(self) -> str:
        with self._cond:
            return self._text

    def mark(self) -> int:
        """An offset to pass to :meth:`wait_for` to only look at output after now."""
        with self._cond:
            return len(self._text)

    def wait_for(
        self,
        pattern: str,
        timeout: float,
        *,
        start: int = 0,
        alive: Callable[[], bool] | None = None,
    ) -> re.Match[str]:
        """Block until ``pattern`` (a regex) appears in the output after ``start``."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                match = regex.search(self._text, start)
                if match is not None:
                    return match
                left = deadline - time.monotonic()
                if left <= 0:
                    raise GuestTimeout(
                        f"the guest did not print {pattern!r} within {timeout:g} s",
                        hint="see the serial console log; a slow host may need a longer timeout",
                    )
                if self._closed or (alive is not None and not alive()):
                    raise EngineError(
                        f"the guest's console closed before it printed {pattern!r}",
                        hint="the VM stopped; see the QEMU log for why",
                    )
                self._cond.wait(min(left, 0.2))

    def send(self, line: str) -> None:
        """Type ``line`` and Enter on the console."""
        self._sock.sendall(line.encode() + b"\n")

    def run(self, command: str, timeout: float = 10.0) -> str:
        """Run a shell command in the guest's root shell and return what it printed."""
        token = f"VMDESK-DONE-{time.monotonic_ns()}"
        typed = f"{token[:6]}''{token[6:]}"  # split, so the shell's echo never matches token
        start = self.mark()
        # A leading space: busybox's line editor may eat the first byte typed right after
        # its prompt (it is waiting for the answer to a cursor-position query).
        self.send(f" {command}; echo {typed}")
        done = self.wait_for(r"^" + re.escape(token) + r"\n", timeout, start=start)
        # The typed line can be echoed twice (by the tty, then by the shell's line editor
        # when it was typed before the prompt): the output starts after the last echo.
        echo_end = self.text.rfind(typed + "\n", start, done.start()) + len(typed) + 1
        return self.text[echo_end : done.start()].rstrip("\n")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=2)


class QemuProcess:
    """A running QEMU for one :class:`~vmdesk.engines.qemu.boot_argv.BootSpec`."""

    def __init__(
        self,
        spec: boot_argv.BootSpec,
        *,
        log_dir: Path | None = None,
        on_serial_line: LineCallback | None = None,
    ) -> None:
        self.spec = spec
        self._log_dir = log_dir
        self._on_serial_line = on_serial_line
        self._runtime: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._qmp: Any = None
        self._serial: SerialConsole | None = None
        self.started_at = 0.0
        self.argv: list[str] = []

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> QemuProcess:
        try:
            self._start()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._teardown()

    def _start(self) -> None:
        binary = system_binary(self.spec.arch)
        # Unix socket paths are limited to ~104 bytes: keep them in a short private dir.
        self._runtime = Path(tempfile.mkdtemp(prefix="vmdesk-"))
        log_dir = self._log_dir or self._runtime
        log_dir.mkdir(parents=True, exist_ok=True)
        self.serial_log = log_dir / "serial.log"
        self.qemu_log = log_dir / "qemu.log"
        qmp_path, serial_path = self._runtime / "qmp.sock", self._runtime / "serial.sock"
        endpoints = boot_argv.Endpoints(spawn.QMP_FD, spawn.SERIAL_FD, self.serial_log)
        self.argv = [str(binary), *boot_argv.build(self.spec, endpoints)]
        self.started_at = time.monotonic()
        self._proc = spawn.spawn({
            "argv": self.argv,
            "listen": {str(spawn.QMP_FD): str(qmp_path), str(spawn.SERIAL_FD): str(serial_path)},
            "rotate": [],
            "remove": [str(self.qemu_log)],  # this run's log only
            "log": str(self.qemu_log),
            "own_session": True,  # a Ctrl-C in the terminal is ours to handle
        }).qemu  # fmt: skip
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(serial_path))
        self._serial = SerialConsole(client, self._on_serial_line)
        self._qmp = QEMUMonitorProtocol(str(qmp_path))
        try:
            self._qmp.connect()
        except Exception as exc:  # QEMU refused its arguments or died at once
            self._proc.wait(timeout=5)
            raise EngineError(
                f"QEMU did not start: {self.log_tail() or exc}",
                hint=f"the full command line and log are in {self.qemu_log}",
            ) from exc

    def _teardown(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(Exception):
                self._qmp.cmd("quit")
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._qmp is not None:
            with contextlib.suppress(Exception, EOFError):  # EOF after quit is expected
                self._qmp.close()
            self._qmp = None
        if self._serial is not None:
            self._serial.close()
            self._serial = None
        if self._runtime is not None:
            shutil.rmtree(self._runtime, ignore_errors=True)
            self._runtime = None

    # -- inspection and control ------------------------------------------------------

    @property
    def serial(self) -> SerialConsole:
        if self._serial is None:
            raise EngineError("the VM is not running")
        return self._serial

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_serial(self, pattern: str, timeout: float, *, start: int = 0) -> re.Match[str]:
        """Wait for ``pattern`` on the serial console, failing fast if QEMU exits."""
        try:
            return self.serial.wait_for(pattern, timeout, start=start, alive=self.alive)
        except EngineError as exc:
            tail = self.log_tail()
            if tail:
                exc.message += f" (QEMU said: {tail})"
            raise

    def qmp(self, command: str, **arguments: Any) -> Any:
        """Run a QMP command and return its result (QMPError, with QEMU's error class, when
        QEMU refuses it)."""
        if self._qmp is None:
            raise EngineError("the VM is not running")
        reply = self._qmp.cmd_raw(command, arguments or None)
        if "error" in reply:
            error = reply["error"]
            raise QMPError(
                f"QMP {command} failed: {error.get('desc', reply)}",
                error_class=str(error.get("class", "")),
            )
        return reply.get("return")

    def status(self) -> str:
        """QEMU's run state (``running``, ``paused``, ``internal-error``, ...)."""
        return str(self.qmp("query-status")["status"])

    def powerdown(self, timeout: float = 30.0) -> float:
        """Press the power button and wait for the guest to power off; returns seconds."""
        assert self._proc is not None
        pressed = time.monotonic()
        self.qmp("system_powerdown")
        try:
            self._proc.wait(timeout=timeout)  # -no-reboot: a guest poweroff exits QEMU
        except subprocess.TimeoutExpired as exc:
            raise GuestTimeout(
                f"the guest did not power off within {timeout:g} s of the power button",
                hint="the guest OS may ignore ACPI; stop it with a forced power-off",
            ) from exc
        return time.monotonic() - pressed

    def wait_exit(self, timeout: float) -> int:
        assert self._proc is not None
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise GuestTimeout(f"QEMU did not exit within {timeout:g} s") from exc

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.qemu_log.read_text(errors="replace")
        except (OSError, AttributeError):
            return ""
        # what QEMU said, not the command line spawn logged before it ("+ qemu-system-...")
        kept = [line for line in text.splitlines() if line.strip() and not line.startswith("+ ")]
        return " | ".join(kept[-lines:])
