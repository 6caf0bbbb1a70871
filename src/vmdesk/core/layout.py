"""Every file name inside a VM bundle, defined once (engines and tools use these)."""

from __future__ import annotations

import os
from pathlib import Path

SUFFIX = ".vmdesk"
CONFIG = "config.json"
LOCK = ".lock"
LAUNCH_PLAN = ".launch-plan.json"  # a cache of the last start (supervisor/launch_plan.py)
DISKS = "disks"
NVRAM = "nvram"
TPM = "tpm"
SNAPSHOTS = "snapshots"
LOGS = "logs"
RUN = "run"
BOOT = "boot"
SUBDIRS = (DISKS, NVRAM, TPM, SNAPSHOTS, LOGS, RUN, BOOT)
# macOS limits unix socket paths to 104 bytes (Linux 108): longer bundle paths put their
# sockets in a short per-user directory instead (see Layout.sockets).
MAX_SOCKET_PATH = 100


class Layout:
    """Paths inside one bundle directory ``root`` (``NAME.vmdesk/``).

    A plain class, not a dataclass: `vmdesk list` imports this and must start fast.
    """

    __slots__ = ("root",)

    def __init__(self, root: Path) -> None:
        self.root = root

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def disks(self) -> Path:
        return self.root / DISKS

    @property
    def nvram(self) -> Path:
        return self.root / NVRAM

    @property
    def tpm(self) -> Path:
        return self.root / TPM

    @property
    def snapshots(self) -> Path:
        return self.root / SNAPSHOTS

    @property
    def logs(self) -> Path:
        return self.root / LOGS

    @property
    def run(self) -> Path:
        return self.root / RUN

    @property
    def boot(self) -> Path:
        return self.root / BOOT

    @property
    def serial_log(self) -> Path:
        return self.logs / "serial.log"

    @property
    def engine_log(self) -> Path:
        return self.logs / "engine.log"

    @property
    def events(self) -> Path:
        return self.logs / "events.jsonl"

    @property
    def supervisor_log(self) -> Path:
        return self.logs / "supervisor.log"

    @property
    def last_exit(self) -> Path:
        """How the VM last stopped (``stopped`` or ``crashed`` and why); status reads it."""
        return self.logs / "last-exit.json"

    @property
    def guest_os(self) -> Path:
        """What the guest's agent last said its OS is (the list shows it while stopped)."""
        return self.logs / "guest-os.json"

    @property
    def supervisor_pid(self) -> Path:
        return self.run / "supervisor.pid"

    @property
    def engine_pid(self) -> Path:
        return self.run / "engine.pid"

    @property
    def suspended_state(self) -> Path:
        """The machine state of a suspended VM; `vmdesk start` resumes from it."""
        return self.snapshots / "suspended.state"

    @property
    def launch_plan(self) -> Path:
        """What the last start ran and what it depended on (supervisor/launch_plan.py)."""
        return self.root / LAUNCH_PLAN

    def sockets(self, vm_uuid: str) -> Path:
        """Where this VM's unix sockets live: ``run/``, or a short dir for long paths."""
        if len(str(self.run / "console.sock")) <= MAX_SOCKET_PATH:
            return self.run
        import tempfile

        return Path(tempfile.gettempdir()) / f"vmdesk-{os.getuid()}" / vm_uuid.replace("-", "")[:16]


class Sockets:
    """The unix sockets of a running VM, inside :meth:`Layout.sockets`."""

    __slots__ = ("dir",)

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @property
    def control(self) -> Path:
        return self.dir / "control.sock"

    @property
    def console(self) -> Path:
        return self.dir / "console.sock"

    @property
    def qmp(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def serial(self) -> Path:
        return self.dir / "serial.sock"

    @property
    def vnc(self) -> Path:
        return self.dir / "vnc.sock"

    @property
    def guest_agent(self) -> Path:
        """The guest agent's channel (qemu-ga's virtio-serial port), held by the engine."""
        return self.dir / "guest-agent.sock"

    @property
    def spice_agent(self) -> Path:
        """The SPICE agent's channel (spice-vdagent: clipboard, display size)."""
        return self.dir / "spice-agent.sock"

    def all(self) -> tuple[Path, ...]:
        return (self.control, self.console, self.qmp, self.serial, self.vnc,
                self.guest_agent, self.spice_agent)  # fmt: skip


def bundle_dir_name(name: str) -> str:
    return f"{name}{SUFFIX}"
