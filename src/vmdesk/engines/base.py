"""What every engine offers, and what it can do as data (branch on capabilities, not types)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vmdesk.core.states import STATES as STATES  # the states sessions report


@dataclass(frozen=True)
class Capabilities:
    engine: str
    arches: tuple[str, ...]
    accelerators: tuple[str, ...]
    pause: bool = True
    reboot: bool = True
    screenshot: bool = True
    vnc: bool = True
    serial_console: bool = True
    usb_passthrough: bool = False
    share_kinds: tuple[str, ...] = field(default_factory=tuple)
    snapshots_with_ram: bool = False
    tpm: bool = True  # a TPM 2.0 for the guest
    port_forwards: bool = True  # host ports forwarded to the guest on NAT
    save_state: bool = True  # suspend: the running machine's state saved to the bundle
    # Optional features: True only where the engine really gives them. A session gives the
    # ones that need more than the core Session through an optional protocol: window ->
    # WindowSession, balloon -> BalloonSession.
    window: bool = False  # a native window on the host's desktop, opened by the supervisor
    # a memory balloon: freed guest memory goes back to the host, and a running VM's memory
    # can be lowered (and raised again up to what it booted with)
    balloon: bool = False
    clipboard: bool = False  # host <-> guest clipboard sharing
    guest_agent: bool = False  # a guest agent channel (IP, OS, exec, quiesced snapshots)
    # The guests' agents' channels are sockets the supervisor speaks on (Sockets.guest_agent
    # and spice_agent), rather than something the hypervisor does by itself (vz's clipboard).
    agent_sockets: bool = False

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


class Session(Protocol):
    """One running VM, owned by its supervisor."""

    def launch(self) -> dict[str, Any] | None:
        """Start the hypervisor process; synchronous, so it can run before any event loop.

        Returns the launch spec it ran when launches are replayable: JSON data naming its
        ``engine``, whose stdlib-only ``vmdesk.engines.<engine>.spawn.spawn(spec)`` starts
        the same process again (see vmdesk.supervisor.launch_plan); None otherwise.
        """

    def launch_spec(self) -> dict[str, Any] | None:
        """What :meth:`launch` would run now (None: not replayable)."""

    def adopt(self, process: Any, spec: dict[str, Any]) -> None:
        """Take over a process spawned by replaying ``spec`` (equal to :meth:`launch_spec`)."""

    async def attach(self) -> None:
        """Connect to the launched hypervisor (control channel, serial console)."""

    async def status(self) -> str: ...

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def reboot(self) -> None: ...

    async def powerdown(self) -> None:
        """Press the power button (the guest decides what to do)."""

    async def quit(self) -> None:
        """Stop at once, like pulling the plug."""

    async def kill(self) -> None:
        """Kill the hypervisor process (no guest shutdown at all)."""

    async def screenshot(self, path: Path) -> None: ...

    async def save_snapshot(self, tag: str, disk_only: bool = False) -> None:
        """Snapshot the running VM with its RAM (when ``capabilities.snapshots_with_ram``),
        or only its disks."""

    async def load_snapshot(self, tag: str) -> None:
        """Put the running VM back to a snapshot taken with :meth:`save_snapshot`."""

    async def delete_snapshot(self, tag: str) -> None: ...

    async def save_state(self, path: Path) -> None:
        """Pause the guest and write its machine state to ``path`` (suspend to disk)."""

    @property
    def restoring(self) -> bool:
        """Whether this launch resumes a saved state (see :meth:`finish_restore`)."""

    async def finish_restore(self) -> None:
        """Wait until the resumed VM runs; then its saved state is no longer needed."""

    async def wait(self) -> int:
        """Wait for the hypervisor to exit; returns its exit status."""

    def events(self) -> AsyncIterator[dict[str, Any]]: ...

    async def serial_read(self) -> bytes:
        """The next chunk the guest wrote to its serial console (b"" at the end)."""

    async def serial_write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...

    @property
    def exit_reason(self) -> str: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def quit_requested(self) -> bool:
        """Whether the exit was asked for (so a non-zero exit is not a crash)."""

    @property
    def accel_reason(self) -> str:
        """The accelerator in use and why it was chosen."""


class WindowSession(Session, Protocol):
    """A session that can show the VM's screen in a native window of the process that owns
    it (the supervisor). Sessions of an engine whose ``capabilities().window`` is true are
    WindowSessions; nothing asks a session whether it has the method."""

    async def open_window(self) -> bool:
        """Open the window (True), or bring the one already open to the front (False)."""


class BalloonSession(Session, Protocol):
    """A session whose VM has a memory balloon (``capabilities().balloon``)."""

    async def memory(self, target: int | None = None) -> int:
        """Set the guest's memory to ``target`` bytes first if given; the bytes it has now
        (what it booted with, less what the balloon holds)."""


class Engine(Protocol):
    name: str
    reason: str  # why it was chosen for this VM, for people ("auto: ...")

    def capabilities(self) -> Capabilities: ...

    def session(self, config: Any, bundle_dir: Path, sockets_dir: Path) -> Session: ...
