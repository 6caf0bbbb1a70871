"""Every file name inside a VM bundle, defined once (engines and tools use these)."""

from __future__ import annotations

from pathlib import Path

SUFFIX = ".vmdesk"
CONFIG = "config.json"
LOCK = ".lock"
DISKS = "disks"
NVRAM = "nvram"
TPM = "tpm"
SNAPSHOTS = "snapshots"
LOGS = "logs"
RUN = "run"
SUBDIRS = (DISKS, NVRAM, TPM, SNAPSHOTS, LOGS, RUN)


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
    def serial_log(self) -> Path:
        return self.logs / "serial.log"

    @property
    def engine_log(self) -> Path:
        return self.logs / "engine.log"

    @property
    def events(self) -> Path:
        return self.logs / "events.jsonl"


def bundle_dir_name(name: str) -> str:
    return f"{name}{SUFFIX}"
