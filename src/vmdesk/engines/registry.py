"""Choosing the engine for a VM: its preference, the host, and each engine's capabilities."""

from __future__ import annotations

import sys
from pathlib import Path

from vmdesk.core.config import VMConfig
from vmdesk.core.errors import EngineError
from vmdesk.engines.base import Capabilities, Engine, Session


class QemuEngine:
    name = "qemu"

    def capabilities(self) -> Capabilities:
        from vmdesk.engines.qemu.session import capabilities

        return capabilities()

    def session(self, config: VMConfig, bundle_dir: Path, sockets_dir: Path) -> Session:
        from vmdesk.engines.qemu.session import QemuSession

        return QemuSession(config, bundle_dir, sockets_dir)


def engine_for(config: VMConfig) -> Engine:
    """The engine that runs ``config``: ``auto`` means QEMU until the VZ engine lands."""
    if config.engine == "vz":
        if sys.platform != "darwin":
            raise EngineError(
                "the vz engine (Apple Virtualization.framework) runs only on macOS",
                hint=f"use `vmdesk edit {config.name} --engine qemu` (or auto)",
            )
        raise EngineError(
            "the vz engine is not available in this version yet",
            hint=f"use `vmdesk edit {config.name} --engine qemu` (or auto)",
        )
    engine = QemuEngine()
    if config.arch not in engine.capabilities().arches:
        raise EngineError(f"QEMU cannot run {config.arch} guests here")
    return engine
