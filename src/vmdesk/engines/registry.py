"""Choosing the engine for a VM: its preference, the host, and each engine's capabilities.

``engine: auto`` picks vz on an Apple silicon Mac that can run it when every feature the VM
uses is supported there (see :func:`vmdesk.engines.vz.capabilities.unsupported`), else QEMU;
``engine: vz`` refuses a VM that needs what vz lacks, naming the feature. The reason for the
choice travels with the engine (``engine.reason``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmdesk.core.config import VMConfig
from vmdesk.core.errors import EngineError
from vmdesk.display import screen
from vmdesk.engines.base import Capabilities, Engine, Session
from vmdesk.engines.vz import capabilities as vz_caps
from vmdesk.engines.vz.capabilities import HostFacts


class QemuEngine:
    name = "qemu"

    def __init__(self, reason: str = "") -> None:
        self.reason = reason

    def capabilities(self) -> Capabilities:
        from vmdesk.engines.qemu.capabilities import capabilities

        return capabilities()

    def session(self, config: VMConfig, bundle_dir: Path, sockets_dir: Path) -> Session:
        from vmdesk.engines.qemu.session import QemuSession

        return QemuSession(config, bundle_dir, sockets_dir)


class VzEngine:
    name = "vz"

    def __init__(self, host: HostFacts, reason: str = "") -> None:
        self.host = host
        self.reason = reason

    def capabilities(self) -> Capabilities:
        return vz_caps.capabilities(self.host)

    def session(self, config: VMConfig, bundle_dir: Path, sockets_dir: Path) -> Session:
        from vmdesk.engines.vz.session import VzSession

        return VzSession(config, bundle_dir, sockets_dir, self.host, self.reason)


@dataclass(frozen=True)
class Choice:
    engine: str  # "qemu" or "vz"
    reason: str

    @property
    def text(self) -> str:
        """One line for users: ``qemu (auto: ...)``."""
        return f"{self.engine} ({self.reason})"


def choose(config: VMConfig, host: HostFacts | None = None) -> Choice:
    """Which engine runs ``config`` on ``host`` (default: this machine), and why."""
    if config.engine == "qemu":
        return Choice("qemu", "the VM asks for QEMU")
    host = host or vz_caps.current_host()
    problem = vz_caps.host_problem(host)
    missing = vz_caps.unsupported(config, host)
    back = f"use `vmdesk edit {config.name} --engine qemu` (or auto)"
    if config.engine == "vz":
        if problem:
            raise EngineError(problem, hint=back)
        if missing:
            raise EngineError(
                f"the vz engine cannot run {config.name}: it does not support "
                + ", ".join(missing),
                hint=f"{back}, or remove what it does not support",
            )
        return Choice("vz", "the VM asks for vz")
    if problem:
        return Choice("qemu", f"auto: {problem}")
    if missing:
        return Choice("qemu", "auto: the vz engine does not support " + ", ".join(missing))
    version = ".".join(map(str, host.macos or ()))
    return Choice("vz", f"auto: macOS {version} on Apple silicon runs all of this VM on vz")


def engine_for(config: VMConfig, host: HostFacts | None = None) -> Engine:
    """The engine that runs ``config`` (its ``reason`` says why it was picked)."""
    choice = choose(config, host)
    if choice.engine == "vz":
        return VzEngine(host or vz_caps.current_host(), choice.reason)
    engine = QemuEngine(choice.reason)
    if config.arch not in engine.capabilities().arches:
        raise EngineError(f"QEMU cannot run {config.arch} guests here")
    return engine


def describe(config: VMConfig, host: HostFacts | None = None) -> dict[str, Any]:
    """The engine choice for people: which engine runs ``config`` here and why, and where
    its screen is shown. A VM that cannot run here (``engine: vz`` on Linux) is described
    too, with ``runs_here`` false and the refusal as its reason."""
    try:
        choice = choose(config, host)
    except EngineError as exc:
        engine = config.engine if config.engine != "auto" else "qemu"
        return {
            "name": engine,
            "reason": exc.message,
            "hint": exc.hint,
            "runs_here": False,
            "text": f"{engine} (cannot run here: {exc.message})",
            "display": screen.place(config, engine),
        }
    return {
        "name": choice.engine,
        "reason": choice.reason,
        "hint": None,
        "runs_here": True,
        "text": choice.text,
        "display": screen.place(config, choice.engine),
    }
