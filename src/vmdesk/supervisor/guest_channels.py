"""The supervisor's side of the guests' agents: qemu-ga and spice-vdagent.

Where the engine's capabilities say the agents' channels are sockets for the supervisor
(``agent_sockets``), it opens them once the engine runs, follows the guest opening and
closing them (QEMU's VSERPORT_CHANGE events name the port's device id), and serves the
control socket's clipboard, display and guest operations from them. The protocols
themselves live in vmdesk.integration.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
from pathlib import Path
from typing import Any

from vmdesk.core import atomic
from vmdesk.core.config import VMConfig
from vmdesk.core.errors import (
    GuestAgentError,
    GuestTimeout,
    ProtocolError,
    Unsupported,
    VMDeskError,
)
from vmdesk.core.layout import Sockets
from vmdesk.engines.base import Capabilities
from vmdesk.integration.guest_agent import GuestAgent, primary_address
from vmdesk.integration.spice_channel import TYPE_NAMES, SpiceChannel
from vmdesk.integration.spice_wire import ClipboardType, Selection
from vmdesk.supervisor import protocol

# The virtio-serial ports' device ids (engines/qemu/vm_argv.py) in VSERPORT_CHANGE events.
GUEST_AGENT_PORT_ID = "qga0"
SPICE_AGENT_PORT_ID = "vdagent0"
SELECTIONS = {"clipboard": Selection.CLIPBOARD, "primary": Selection.PRIMARY}
TYPES = {name: kind for kind, name in TYPE_NAMES.items()}
TYPES.update({"text": ClipboardType.UTF8_TEXT, "text/plain": ClipboardType.UTF8_TEXT,
              "png": ClipboardType.IMAGE_PNG})  # fmt: skip
PROBE_EVERY = 5.0  # seconds between pings of an agent whose port state is unknown
INFO_WAIT = 2.0  # how long `show` and `vmdesk ip` wait for a guest agent that is not there
RECORD_WAIT = 30.0  # how long the OS record waits for an agent that opened its port


class GuestChannels:
    def __init__(
        self, config: VMConfig, sockets: Sockets, capabilities: Capabilities, os_record: Path
    ) -> None:
        self.config = config
        self.os_record = os_record  # Layout.guest_os: rewritten whenever the agent answers
        ours = capabilities.agent_sockets
        self.spice = SpiceChannel(sockets.spice_agent) if ours else None
        self.agent = GuestAgent(sockets.guest_agent) if ours and config.guest_agent else None
        self.agent_open: bool | None = None  # the guest's side of qemu-ga's port, if known
        self._probe: asyncio.Task[None] | None = None
        self._recording: asyncio.Task[None] | None = None

    async def open(self) -> None:
        if self.spice is not None:
            if self.spice.path.exists():
                await self.spice.open()
            else:
                self.spice = None  # the engine made no such port (no clipboard, no screen)
        if self.agent is not None:  # one already there (a resumed guest) sends no event
            self._probe = asyncio.create_task(self._probe_agent())

    async def _probe_agent(self) -> None:
        """Until the guest's side of the port is known (no event says so after a resume,
        nor on an engine without VSERPORT_CHANGE), ask the agent now and then."""
        assert self.agent is not None
        while self.agent_open is None:
            with contextlib.suppress(VMDeskError):
                if await self.agent.ping(timeout=INFO_WAIT) and self.agent_open is None:
                    self._agent_opened()
                    return
            await asyncio.sleep(PROBE_EVERY)

    def state(self) -> dict[str, str]:
        """Which agents answer right now: connected, waiting (not yet, or not installed in
        the guest), or none (the VM has no such channel)."""
        spice = "none" if self.spice is None else "connected" if self.spice.ready else "waiting"
        agent = "none" if self.agent is None else "connected" if self.agent_open else "waiting"
        return {"guest_agent": agent, "spice_agent": spice}

    async def close(self) -> None:
        for task in (self._probe, self._recording):
            if task is not None:
                task.cancel()
        if self.spice is not None:
            await self.spice.close()
        if self.agent is not None:
            with contextlib.suppress(Exception):
                await self.agent.close()

    async def on_event(self, name: str, data: dict[str, Any] | None) -> None:
        """An engine event: the guest opened or closed one of the agents' ports."""
        if name != "VSERPORT_CHANGE" or not isinstance(data, dict):
            return
        opened = bool(data.get("open"))
        if data.get("id") == SPICE_AGENT_PORT_ID and self.spice is not None:
            await self.spice.port_changed(opened)
        elif data.get("id") == GUEST_AGENT_PORT_ID:
            if opened:
                self._agent_opened()
            else:
                self.agent_open = False

    def _agent_opened(self) -> None:
        self.agent_open = True
        if self._recording is None or self._recording.done():
            self._recording = asyncio.create_task(self._record_os())

    async def _record_os(self) -> None:
        """Write down the OS the guest's agent reports, for lists that do not ask a
        running guest (and show it while the VM is stopped)."""
        assert self.agent is not None
        try:  # a guest whose agent has just opened its port may still be starting it
            info = await self.agent.os_info(timeout=RECORD_WAIT)
        except VMDeskError:
            return
        record = {"name": info.pretty_name or info.name, "id": info.id,
                  "version": info.version_id or info.version, "seen": time.time()}  # fmt: skip
        with contextlib.suppress(OSError):
            await asyncio.to_thread(atomic.write_text, self.os_record, json.dumps(record) + "\n")

    # -- the clipboard -------------------------------------------------------------------

    def _clipboard(self) -> SpiceChannel:
        name = self.config.name
        if not self.config.clipboard:
            raise Unsupported(
                f"clipboard sharing is off for VM {name!r}",
                hint=f"turn it on: `vmdesk edit {name} --clipboard` (it applies at the next start)",
            )
        if self.spice is None:
            raise Unsupported(
                f"VM {name!r} has no clipboard channel that VM-Desk speaks on in this run",
                hint="on the vz engine macOS shares the clipboard itself: copy and paste as "
                f"usual; on QEMU restart the VM (`vmdesk stop {name}`, then `vmdesk start {name}`)",
            )
        return self.spice

    async def clipboard_get(self, request: protocol.ClipboardGetRequest) -> protocol.ClipboardReply:
        spice = self._clipboard()
        selection = _selection(request["selection"])
        wanted = _type(request["type"]) if request["type"] else None
        await spice.wait_ready(request["wait"])
        owner, types = spice.owner(selection)
        got = await spice.fetch(selection, wanted, request["wait"])
        return {
            "owner": owner,
            "types": [TYPE_NAMES.get(ClipboardType(t), str(t)) for t in types if t in TYPE_NAMES],
            "type": None if got is None else TYPE_NAMES[ClipboardType(got[0])],
            "data": None if got is None else base64.b64encode(got[1]).decode("ascii"),
            "generation": spice.generation,
        }

    async def clipboard_set(
        self, request: protocol.ClipboardSetRequest
    ) -> protocol.ClipboardSetReply:
        spice = self._clipboard()
        data = _base64(request["data"], "clipboard_set's data")
        await spice.offer({_type(request["type"]): data}, _selection(request["selection"]))
        return {"delivered": spice.ready}

    async def clipboard_watch(
        self, request: protocol.ClipboardWatchRequest
    ) -> protocol.ClipboardWatchReply:
        """Long poll: returns once the guest's clipboard changes after ``seen``."""
        spice = self._clipboard()
        generation = await spice.changed(request["seen"], request["wait"])
        owner, types = spice.owner(Selection.CLIPBOARD)
        names = [TYPE_NAMES[ClipboardType(t)] for t in types if t in TYPE_NAMES]
        return {"generation": generation, "owner": owner, "types": names}

    # -- the display ---------------------------------------------------------------------

    async def display_size(self, request: protocol.DisplaySizeRequest) -> protocol.DisplaySizeReply:
        if self.spice is None:
            raise Unsupported(
                f"VM {self.config.name!r} has no SPICE agent channel to resize its display",
                hint="the display follows the window only with a screen and a SPICE agent",
            )
        await self.spice.resize(request["width"], request["height"])
        return {"sent": self.spice.ready}

    # -- the guest agent -----------------------------------------------------------------

    def _agent(self) -> GuestAgent:
        if self.agent is None:
            name = self.config.name
            raise Unsupported(
                f"VM {name!r} has no guest agent channel",
                hint=f"turn it on: `vmdesk edit {name} --guest-agent`, then restart the VM",
            )
        return self.agent

    async def guest_info(self, request: protocol.GuestInfoRequest) -> protocol.GuestInfoReply:
        agent = self._agent()
        wait = request["wait"]
        try:
            addresses = await agent.addresses(timeout=wait)
            os_info = await agent.os_info(timeout=wait)
            host = await agent.host_name(timeout=wait)
        except GuestTimeout:
            return {"agent": "not answering", "addresses": [], "ipv4": None, "ipv6": None,
                    "os": None, "host_name": None}  # fmt: skip
        v4, v6 = primary_address(addresses, "ipv4"), primary_address(addresses, "ipv6")
        return {
            "agent": "connected",
            "addresses": [
                {
                    "interface": a.interface,
                    "family": a.family,
                    "address": a.address,
                    "prefix": a.prefix,
                }
                for a in addresses
            ],
            "ipv4": v4.address if v4 else None,
            "ipv6": v6.address if v6 else None,
            "os": {
                "name": os_info.pretty_name or os_info.name,
                "id": os_info.id,
                "version": os_info.version_id or os_info.version,
                "kernel": os_info.kernel_release,
            },
            "host_name": host,
        }

    async def guest_exec(self, request: protocol.GuestExecRequest) -> protocol.GuestExecReply:
        argv = request["argv"]
        if not argv or not all(isinstance(a, str) for a in argv):
            raise Unsupported("exec needs a command", hint="vmdesk exec NAME -- COMMAND [ARGS]")
        stdin = _base64(request["input"], "guest_exec's input") if request["input"] else None
        done = await self._agent().exec(argv, input=stdin, timeout=request["wait"])
        return {
            "exit_code": done.exit_code,
            "signal": done.signal,
            "stdout": base64.b64encode(done.stdout).decode("ascii"),
            "stderr": base64.b64encode(done.stderr).decode("ascii"),
            "truncated": done.stdout_truncated or done.stderr_truncated,
        }

    async def after_revert(self) -> None:
        """The guest is back where a snapshot left it: its agents' state (clipboard
        serials, what they were told) is that moment's, and its clock stood still since."""
        if self.spice is not None:
            await self.spice.port_changed(True)  # start the conversation afresh
        await self.set_time()

    async def set_time(self) -> bool:
        """After a resume or a snapshot's revert the guest's clock is where it stopped:
        set it from the host's (best effort: False when no agent answers)."""
        if self.agent is None:
            return False
        try:
            await self.agent.set_time(time.time_ns(), timeout=INFO_WAIT)
        except VMDeskError:
            return False
        return True

    async def shutdown(self, wait: float) -> bool:
        """Ask the guest's agent to power the guest down (for a guest that ignores the
        power button); False when no agent answers."""
        if self.agent is None:
            return False
        try:
            await asyncio.wait_for(self.agent.shutdown("powerdown"), wait)
        except (VMDeskError, TimeoutError):
            return False
        return True

    @contextlib.asynccontextmanager
    async def quiesced(self) -> Any:
        """Freeze the guest's file systems around a disk snapshot when an agent answers;
        yields whether they were frozen."""
        if self.agent is None:
            yield False
            return
        try:
            if not await self.agent.ping():
                yield False
                return
        except GuestAgentError:
            yield False
            return
        async with self.agent.quiesced(required=False) as frozen:
            yield frozen


def _base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ProtocolError(
            f"{what} is not base64", hint="send the bytes base64-encoded (RFC 4648)"
        ) from None


def _selection(name: str) -> int:
    try:
        return SELECTIONS[name]
    except KeyError:
        raise Unsupported(
            f"no clipboard selection {name!r}", hint="use clipboard or primary"
        ) from None


def _type(name: str) -> int:
    try:
        return TYPES[name]
    except KeyError:
        known = ", ".join(sorted(TYPE_NAMES.values()))
        raise Unsupported(f"clipboard type {name!r} is not one the agents know",
                          hint=f"use one of {known}") from None  # fmt: skip
