"""An async client for the QEMU guest agent (qemu-ga), whichever engine carries its channel.

qemu-ga speaks QMP's JSON (no greeting, no capability negotiation) over a virtio-serial port
whose host side is a unix socket. Nothing on that socket says whether the agent runs: a guest
without it (or still booting, or paused) just never answers, so every call has a timeout, and
whatever the agent answers later belongs to no one. Hence qemu-ga's rule, kept here: a
guest-sync with a random number on connect and after any timeout, and every reply ignored
until that number comes back. Calls go one at a time, as qemu-ga answers them anyway.

The qemu.qmp library carries the JSON; this module adds the sync, the timeouts, typed
results and :class:`~vmdesk.core.errors.GuestAgentError` (the agent's own error class kept)
or :class:`~vmdesk.core.errors.GuestAgentTimeout` (it did not answer).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Self, TypeAlias

from qemu.qmp import (
    ConnectError,
    ExecInterruptedError,
    ExecuteError,
    QMPClient,
    Runstate,
    StateError,
)
from qemu.qmp.qmp_client import BadReplyError

from vmdesk.core.errors import GuestAgentError, GuestAgentTimeout, GuestTimeout

log = logging.getLogger(__name__)

Connector: TypeAlias = Callable[[], Awaitable[socket.socket]]
Family: TypeAlias = Literal["ipv4", "ipv6"]
ShutdownMode: TypeAlias = Literal["powerdown", "halt", "reboot"]

TIMEOUT = 10.0  # for one call, unless it says otherwise
PING_TIMEOUT = 1.0
FREEZE_TIMEOUT = 60.0  # freezing syncs every file system first
EXEC_TIMEOUT = 60.0
SHUTDOWN_WAIT = 2.0  # how long guest-shutdown may take to be refused (success is silence)
_POLL_FIRST, _POLL_MAX = 0.005, 0.5  # guest-exec-status backoff, growing by half:
# a short command (`true`) ends within tens of ms, and each look is one round trip
_SYNC_ATTEMPTS = 8  # replies that may come back stale before the agent is given up on
_SESSIONS = 3  # connections tried when stale bytes break the first ones
# qemu-ga captures up to 16 MiB of each of stdout and stderr; base64 makes a status line of
# up to ~43 MB, and qemu.qmp drops the connection on a line longer than its buffer.
_READ_BUFFER = 64 * 1024 * 1024
_RANDOM_ID_LIMIT = 2**63 - 1  # qemu-ga's guest-sync id is an int64
_SHOWN = 200  # characters of what the guest sent quoted in an error

_NOT_ANSWERING = (
    "is qemu-guest-agent running in the guest? (`systemctl status qemu-guest-agent`); it "
    "does not answer while the guest boots or is paused, nor when another client holds "
    "the agent's socket"
)
_UNREACHABLE = "is the VM running, with a guest agent channel (org.qemu.guest_agent.0)?"
_LOST = "the VM may have stopped or rebooted; the next call connects again"
_MALFORMED = (
    "the guest agent answered with something qemu-ga never sends: a broken or foreign agent "
    "in the guest (`qemu-ga --version` there), or another program on its port"
)
_NOT_THERE = (
    "this guest agent lacks {cmd} or has it disabled (as it disables most commands while the "
    "guest's file systems are frozen: thaw them); `info()` lists what it can do"
)

# Interfaces that are not the VM's own link, tried last for a primary address.
_VIRTUAL_PREFIXES = ("docker", "br-", "veth", "virbr", "cni", "flannel", "podman", "lxcbr",
                     "lxdbr", "vnet", "tun", "tap", "wg", "tailscale", "zt")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Address:
    """One address of a guest network interface (from guest-network-get-interfaces)."""

    interface: str
    family: Family
    address: str
    prefix: int
    mac: str | None = None  # the interface's hardware address, when the guest reports it


@dataclass(frozen=True, slots=True)
class OsInfo:
    """guest-get-osinfo: os-release(5) fields on POSIX guests (any may be missing)."""

    pretty_name: str | None
    id: str | None
    version: str | None
    version_id: str | None
    name: str | None
    kernel_release: str | None
    kernel_version: str | None
    machine: str | None


@dataclass(frozen=True, slots=True)
class ExecResult:
    """How a guest-exec'd program ended: ``exit_code`` when it exited, ``signal`` when a
    signal (or on Windows an unhandled exception) ended it; the ``*_truncated`` flags say the
    agent's capture limit cut that output short."""

    exit_code: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True, slots=True)
class AgentCommand:
    name: str
    enabled: bool  # the guest's admin can disable commands (qemu-ga --block-rpcs)
    success_response: bool  # False: the agent says nothing when it succeeds (guest-shutdown)


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """guest-info: the agent's version and the commands it has."""

    version: str
    commands: tuple[AgentCommand, ...]

    def supports(self, command: str) -> bool:
        return any(c.name == command and c.enabled for c in self.commands)


class GuestAgent:
    """A connection to one guest's qemu-ga, made on first use (or :meth:`connect`) and again
    whenever it is lost. ``channel`` is the agent socket's path or an async callable giving a
    connected socket (how an engine other than QEMU hands over its channel)."""

    def __init__(self, channel: str | os.PathLike[str] | Connector, *, timeout: float = TIMEOUT):
        self._channel = channel
        self._timeout = timeout
        self._client = QMPClient("guest-agent", readbuflen=_READ_BUFFER)
        self._client.await_greeting = False
        self._client.negotiate = False
        self._synced = False
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the session ------------------------------------------------------------------------

    async def connect(self, *, timeout: float | None = None) -> None:
        """Connect and sync, unless that is done already."""
        async with self._lock:
            await self._session(self._deadline(timeout))

    async def sync(self, *, timeout: float | None = None) -> None:
        """Sync again: every reply still on its way is ignored from here on."""
        async with self._lock:
            self._synced = False
            await self._session(self._deadline(timeout))

    async def close(self) -> None:
        """Disconnect; calls waiting for an answer fail as lost."""
        self._synced = False
        with contextlib.suppress(Exception):  # the reader's own failure, already reported
            await self._client.disconnect()

    def _deadline(self, timeout: float | None) -> float:
        return asyncio.get_running_loop().time() + (self._timeout if timeout is None else timeout)

    async def _session(self, deadline: float) -> QMPClient:
        """The connected, synced client."""
        for attempt in range(_SESSIONS):
            client = await self._connected(deadline)
            if self._synced:
                return client
            try:
                await self._sync(client, deadline)
                return client
            except GuestAgentError:
                # qemu.qmp drops the connection on bytes it cannot parse, such as a previous
                # client's 0xFF-delimited reply or an error without an id: they are consumed
                # now, so a new connection starts clean.
                if client.runstate == Runstate.RUNNING or attempt == _SESSIONS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connected(self, deadline: float) -> QMPClient:
        client = self._client
        if client.runstate == Runstate.RUNNING:
            return client
        if client.runstate != Runstate.IDLE:
            await self.close()  # back to IDLE after a lost connection
        self._synced = False
        try:
            async with asyncio.timeout_at(deadline):
                if isinstance(self._channel, str | os.PathLike):
                    await client.connect(os.fspath(self._channel))
                else:
                    await client.connect(await self._channel())
        except (OSError, ConnectError, TimeoutError) as exc:
            raise GuestAgentError(
                f"cannot connect to the guest agent at {self._where()}: {exc}", _UNREACHABLE
            ) from exc
        return client

    def _where(self) -> str:
        channel = self._channel
        return os.fspath(channel) if isinstance(channel, str | os.PathLike) else "its channel"

    # qemu-ga prefers guest-sync-delimited, whose reply comes after a 0xFF byte meant to
    # reset the client's parser. qemu.qmp cannot take it: its reader json.loads() each line,
    # which fails on the 0xFF with a UnicodeDecodeError (not the JSONDecodeError it handles),
    # and the connection is torn down. Nor is the 0xFF sent before the request (to flush a
    # previous client's partial JSON): qemu-ga answers it with a parse error without an id,
    # which qemu.qmp also treats as fatal. Plain guest-sync is enough for a client that
    # reads whole lines, and qemu.qmp's message ids already drop late replies from this
    # connection; the random number catches those from a previous one, whose ids repeat.
    async def _sync(self, client: QMPClient, deadline: float) -> None:
        for _ in range(_SYNC_ATTEMPTS):
            token = 1 + secrets.randbelow(_RANDOM_ID_LIMIT)
            try:
                echoed = await self._exchange(client, "guest-sync", {"id": token}, deadline)
            except GuestAgentError as exc:
                if not exc.error_class:  # no answer at all
                    raise
                continue  # a previous session's error reply, carrying our message id
            if type(echoed) is int and echoed == token:
                self._synced = True
                return
            # Anything else answers a previous session's request that had our message id:
            # its own answer is dropped by qemu.qmp as unknown, so ask again.
        raise GuestAgentError(
            f"the guest agent kept sending stale replies ({_SYNC_ATTEMPTS} syncs)", _LOST
        )

    async def _call(
        self,
        command: str,
        arguments: Mapping[str, object] | None = None,
        *,
        timeout: float | None = None,
    ) -> object:
        """Run one command on a synced connection, within ``timeout`` (the wait behind
        another call and the sync included)."""
        deadline = self._deadline(timeout)
        try:
            async with asyncio.timeout_at(deadline):
                await self._lock.acquire()
        except TimeoutError:
            raise GuestAgentTimeout(
                f"the guest agent is still busy with another call: {command} was not sent",
                _NOT_ANSWERING,
            ) from None
        try:
            client = await self._session(deadline)
            return await self._exchange(client, command, arguments, deadline)
        finally:
            self._lock.release()

    async def _exchange(
        self,
        client: QMPClient,
        command: str,
        arguments: Mapping[str, object] | None,
        deadline: float,
    ) -> object:
        loop = asyncio.get_running_loop()
        waited = max(0.0, deadline - loop.time())
        try:
            async with asyncio.timeout_at(deadline):
                return await client.execute(command, arguments)
        except TimeoutError:
            self._synced = False  # its answer may still come: sync before the next call
            raise GuestAgentTimeout(
                f"the guest agent did not answer {command} within {waited:.3g} s", _NOT_ANSWERING
            ) from None
        except asyncio.CancelledError:
            self._synced = False
            raise
        except BadReplyError as exc:
            # An answer to this very request, neither a return nor a well-formed error.
            raise _malformed(command, str(exc.error_message)) from exc
        except ExecuteError as exc:
            raise GuestAgentError(
                f"the guest agent refused {command}: {_clip(str(exc))} ({_clip(exc.error_class)})",
                _refusal_hint(command, exc.error_class),
                error_class=_clip(exc.error_class),
            ) from exc
        except (ExecInterruptedError, StateError, EOFError, OSError) as exc:
            self._synced = False
            raise GuestAgentError(
                f"the connection to the guest agent was lost during {command}", _LOST
            ) from exc

    # -- commands ---------------------------------------------------------------------------

    async def ping(self, *, timeout: float = PING_TIMEOUT) -> bool:
        """Whether the agent answers within ``timeout`` (a refusal is an answer too)."""
        try:
            await self._call("guest-ping", timeout=timeout)
        except GuestAgentTimeout:
            return False
        except GuestAgentError as exc:
            return bool(exc.error_class)
        return True

    async def info(self, *, timeout: float | None = None) -> AgentInfo:
        reply = _Reply("guest-info", await self._call("guest-info", timeout=timeout))
        commands = tuple(
            AgentCommand(c.text("name"), c.flag("enabled"), c.flag("success-response", True))
            for c in reply.objects("supported_commands")
        )
        return AgentInfo(reply.text("version"), commands)

    async def host_name(self, *, timeout: float | None = None) -> str:
        reply = await self._call("guest-get-host-name", timeout=timeout)
        return _Reply("guest-get-host-name", reply).text("host-name")

    async def os_info(self, *, timeout: float | None = None) -> OsInfo:
        r = _Reply("guest-get-osinfo", await self._call("guest-get-osinfo", timeout=timeout))
        return OsInfo(
            pretty_name=r.opt_text("pretty-name"),
            id=r.opt_text("id"),
            version=r.opt_text("version"),
            version_id=r.opt_text("version-id"),
            name=r.opt_text("name"),
            kernel_release=r.opt_text("kernel-release"),
            kernel_version=r.opt_text("kernel-version"),
            machine=r.opt_text("machine"),
        )

    async def addresses(self, *, timeout: float | None = None) -> list[Address]:
        """Every address of every guest interface, in the guest's order, without loopback."""
        command = "guest-network-get-interfaces"
        found: list[Address] = []
        for iface in _Reply.list_of(command, await self._call(command, timeout=timeout)):
            name, mac = iface.text("name"), iface.opt_text("hardware-address")
            for ip in iface.objects("ip-addresses", required=False):
                kind, address = ip.text("ip-address-type"), ip.text("ip-address")
                if kind not in ("ipv4", "ipv6") or _is_loopback(address):
                    continue
                family: Family = "ipv4" if kind == "ipv4" else "ipv6"
                found.append(Address(name, family, address, ip.number("prefix"), mac))
        return found

    async def set_time(self, ns: int | None = None, *, timeout: float | None = None) -> None:
        """Set the guest's clock to ``ns`` since the epoch (UTC) and its RTC from that; with
        None the guest sets its clock from its RTC (not on Windows guests)."""
        await self._call("guest-set-time", None if ns is None else {"time": ns}, timeout=timeout)

    async def exec(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float = EXEC_TIMEOUT,
    ) -> ExecResult:
        """Run ``argv`` in the guest (``argv[0]`` looked up on the guest's PATH) with
        ``input`` on its stdin, and wait up to ``timeout`` for it to end. Past that it keeps
        running in the guest: qemu-ga cannot kill it."""
        if isinstance(argv, str) or not argv:
            raise ValueError("exec needs a program and its arguments as a list")
        arguments: dict[str, object] = {"path": argv[0], "arg": list(argv[1:]),
                                        "capture-output": True}  # fmt: skip
        if input is not None:
            arguments["input-data"] = base64.b64encode(input).decode("ascii")
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + timeout, _POLL_FIRST
        # Every call within the command's own timeout (an agent that never answers gives
        # a GuestAgentTimeout in time, not the next layer's timeout).
        started = await self._call("guest-exec", arguments, timeout=min(timeout, self._timeout))
        pid = _Reply("guest-exec", started).number("pid")
        while True:
            left = max(deadline - loop.time(), PING_TIMEOUT)
            reply = await self._call(
                "guest-exec-status", {"pid": pid}, timeout=min(left, self._timeout)
            )
            status = _Reply("guest-exec-status", reply)
            if status.flag("exited"):
                return _exec_result(status)
            if loop.time() >= deadline:
                raise GuestTimeout(
                    f"{argv[0]} did not finish within {timeout:g} s in the guest (pid {pid})",
                    hint="it is still running there; give it a longer timeout",
                )
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            delay = min(delay * 1.5, _POLL_MAX)

    async def freeze(self, *, timeout: float = FREEZE_TIMEOUT) -> int:
        """Sync and freeze the guest's local file systems; the number frozen (0: nothing
        needs thawing). Prefer :meth:`quiesced`, which always thaws."""
        reply = await self._call("guest-fsfreeze-freeze", timeout=timeout)
        return _number_of("guest-fsfreeze-freeze", reply)

    async def thaw(self, *, timeout: float = FREEZE_TIMEOUT) -> int:
        """Thaw the guest's file systems; the number thawed."""
        reply = await self._call("guest-fsfreeze-thaw", timeout=timeout)
        return _number_of("guest-fsfreeze-thaw", reply)

    async def frozen(self, *, timeout: float | None = None) -> bool:
        reply = await self._call("guest-fsfreeze-status", timeout=timeout)
        if reply not in ("frozen", "thawed"):
            raise _malformed("guest-fsfreeze-status", f"unknown state {reply!r}")
        return reply == "frozen"

    @contextlib.asynccontextmanager
    async def quiesced(
        self, *, required: bool = True, timeout: float = FREEZE_TIMEOUT
    ) -> AsyncIterator[bool]:
        """Freeze the guest's file systems for the block (a consistent disk snapshot), then
        thaw them, however the block ends; yields whether any were frozen. When they cannot
        be frozen, raise, or with ``required=False`` yield False."""
        # A freeze not answered in time (or cancelled) may still happen in the guest: thaw
        # then too, with time to wait behind it. A refusal froze nothing (qemu-ga thaws on
        # error), and neither did a freeze that never reached the agent.
        maybe_frozen, thaw_wait = True, max(timeout, FREEZE_TIMEOUT)
        count = 0
        try:
            try:
                count = await self.freeze(timeout=timeout)
            except GuestAgentError as exc:
                maybe_frozen = isinstance(exc, GuestAgentTimeout)
                if required:
                    raise
            else:
                maybe_frozen, thaw_wait = count > 0, timeout
            yield count > 0
        finally:
            if maybe_frozen:
                await self._thaw_shielded(thaw_wait)

    async def _thaw_shielded(self, timeout: float) -> None:
        # A cancelled block must still thaw: the thaw runs on even if we are cancelled again.
        task = asyncio.ensure_future(self.thaw(timeout=timeout))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        await asyncio.shield(task)

    async def shutdown(
        self, mode: ShutdownMode = "powerdown", *, timeout: float = SHUTDOWN_WAIT
    ) -> None:
        """Ask the guest to power down, halt or reboot. qemu-ga never answers a shutdown that
        works: silence for ``timeout`` seconds, or the guest going away, is success; only a
        refusal is an error. The agent is synced first, so silence is not a dead agent."""
        await self.connect()
        try:
            await self._call("guest-shutdown", {"mode": mode}, timeout=timeout)
        except GuestAgentError as exc:
            if exc.error_class:
                raise
        self._synced = False  # a late refusal, or the agent restarted, is stale now


def primary_address(addresses: Sequence[Address], family: Family = "ipv4") -> Address | None:
    """The address of ``family`` to reach the guest by: never link-local; the VM's own
    interfaces before container bridges and tunnels, then global before private addresses,
    then the guest's order."""
    ranked: list[tuple[bool, bool, int, Address]] = []
    for index, entry in enumerate(addresses):
        if entry.family != family:
            continue
        try:
            ip = ipaddress.ip_address(entry.address.split("%", 1)[0])
        except ValueError:
            continue
        if ip.is_link_local or ip.is_loopback:
            continue
        virtual = entry.interface.startswith(_VIRTUAL_PREFIXES)
        # Python counts site-local fec0::/10 (QEMU user networking's IPv6) as global.
        site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
        ranked.append((virtual, site_local or not ip.is_global, index, entry))
    return min(ranked, key=lambda r: r[:3])[3] if ranked else None


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _refusal_hint(command: str, error_class: str) -> str | None:
    if error_class == "CommandNotFound":  # qemu-ga's class for unknown and disabled ones
        return _NOT_THERE.format(cmd=command)
    return None


def _exec_result(status: _Reply) -> ExecResult:
    return ExecResult(
        exit_code=status.opt_number("exitcode"),
        signal=status.opt_number("signal"),
        stdout=status.data_of("out-data"),
        stderr=status.data_of("err-data"),
        stdout_truncated=status.flag("out-truncated", False),
        stderr_truncated=status.flag("err-truncated", False),
    )


class _Reply:
    """A reply object read field by field; a field of the wrong shape is a GuestAgentError."""

    def __init__(self, command: str, value: object) -> None:
        self.command = command
        if not isinstance(value, dict):
            raise _malformed(command, f"expected an object, got {type(value).__name__}")
        self.data: dict[str, object] = value

    @classmethod
    def list_of(cls, command: str, value: object) -> list[_Reply]:
        if not isinstance(value, list):
            raise _malformed(command, "expected a list")
        return [cls(command, item) for item in value]

    def _get(self, key: str, kind: type, default: object = None) -> object:
        value = self.data.get(key, default)
        if value is not None and type(value) is not kind:  # a bool is no int here
            raise _malformed(self.command, f"{key} is not a {kind.__name__}")
        return value

    def text(self, key: str) -> str:
        value = self._get(key, str)
        if not isinstance(value, str):
            raise _malformed(self.command, f"{key} is missing")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self._get(key, str)
        return value if isinstance(value, str) else None

    def number(self, key: str) -> int:
        value = self._get(key, int)
        if not isinstance(value, int):
            raise _malformed(self.command, f"{key} is missing")
        return value

    def opt_number(self, key: str) -> int | None:
        value = self._get(key, int)
        return value if isinstance(value, int) else None

    def flag(self, key: str, default: bool | None = None) -> bool:
        value = self._get(key, bool, default)
        if not isinstance(value, bool):
            raise _malformed(self.command, f"{key} is missing")
        return value

    def data_of(self, key: str) -> bytes:
        """A base64 field as bytes; absent is empty (qemu-ga leaves out empty output)."""
        encoded = self.opt_text(key)
        try:
            return base64.b64decode(encoded, validate=True) if encoded else b""
        except binascii.Error as exc:
            raise _malformed(self.command, f"{key} is not base64") from exc

    def objects(self, key: str, *, required: bool = True) -> list[_Reply]:
        value = self.data.get(key)
        if value is None and not required:
            return []
        return _Reply.list_of(self.command, value)


def _number_of(command: str, value: object) -> int:
    if type(value) is not int:
        raise _malformed(command, "expected a number")
    return value


def _clip(text: str) -> str:
    """At most :data:`_SHOWN` characters of what the guest said (it may be megabytes)."""
    return text if len(text) <= _SHOWN else text[:_SHOWN] + f"... ({len(text)} characters)"


def _malformed(command: str, what: str) -> GuestAgentError:
    message = f"the guest agent's reply to {command} is malformed: {_clip(what)}"
    log.warning("%s", message)  # the supervisor's log: what the guest sent that was wrong
    return GuestAgentError(message, _MALFORMED)
