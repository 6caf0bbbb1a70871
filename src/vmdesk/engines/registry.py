"""Choosing the engine for a VM: its preference, the host, and each engine's capabilities.

``engine: auto`` picks vz on an Apple silicon Mac that can run it when every feature the VM
uses is supported there (see :func:`vmdesk.engines.vz.capabilities.unsupported`), else QEMU;
``engine: vz`` refuses a VM that needs what vz lacks, naming the feature. The reason for the
choice travels with the engine (``engine.reason``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmdesk.core.errors import EngineError
from vmdesk.display import screen
from vmdesk.engines.base import Capabilities, Engine, Session
from vmdesk.engines.vz import capabilities as vz_caps
from vmdesk.engines.vz.capabilities import HostFacts

TYPE_CHECKING = False  # the config model (pydantic) is imported only where it is needed
if TYPE_CHECKING:
    from vmdesk.core.config import VMConfig


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


def _choose(
    preference: str, name: str, host: HostFacts | None, missing: Callable[[HostFacts], list[str]]
) -> Choice:
    """The choice from the VM's ``engine`` preference; ``missing(host)`` lists what vz can't
    give the VM (asked only on a host that can run vz at all)."""
    if preference == "qemu":
        return Choice("qemu", "the VM asks for QEMU")
    host = host or vz_caps.current_host()
    problem = vz_caps.host_problem(host)
    back = f"use `vmdesk edit {name} --engine qemu` (or auto)"
    if preference == "vz":
        if problem:
            raise EngineError(problem, hint=back)
        lacking = missing(host)
        if lacking:
            raise EngineError(
                f"the vz engine cannot run {name}: it does not support " + ", ".join(lacking),
                hint=f"{back}, or remove what it does not support",
            )
        return Choice("vz", "the VM asks for vz")
    if problem:
        return Choice("qemu", f"auto: {problem}")
    lacking = missing(host)
    if lacking:
        return Choice("qemu", "auto: the vz engine does not support " + ", ".join(lacking))
    version = ".".join(map(str, host.macos or ()))
    return Choice("vz", f"auto: macOS {version} on Apple silicon runs all of this VM on vz")


def choose(config: VMConfig, host: HostFacts | None = None) -> Choice:
    """Which engine runs ``config`` on ``host`` (default: this machine), and why."""
    return _choose(config.engine, config.name, host, lambda h: vz_caps.unsupported(config, h))


def _choose_data(data: Mapping[str, Any], host: HostFacts | None) -> Choice:
    """:func:`choose` for a checked description's JSON form (see Bundle.load_data); the
    model is built only where vz could run the VM and must look at all of it."""

    def missing(h: HostFacts) -> list[str]:
        from vmdesk.core.config import from_dict

        return vz_caps.unsupported(from_dict(dict(data)), h)

    return _choose(str(data["engine"]), str(data["name"]), host, missing)


def _engine(choice: Choice, arch: str, host: HostFacts | None) -> Engine:
    if choice.engine == "vz":
        return VzEngine(host or vz_caps.current_host(), choice.reason)
    engine = QemuEngine(choice.reason)
    if arch not in engine.capabilities().arches:
        raise EngineError(f"QEMU cannot run {arch} guests here")
    return engine


def engine_for(config: VMConfig | Mapping[str, Any], host: HostFacts | None = None) -> Engine:
    """The engine that runs ``config`` (the model, or a checked description's JSON form);
    its ``reason`` says why it was picked."""
    if isinstance(config, Mapping):
        return _engine(_choose_data(config, host), str(config["arch"]), host)
    return _engine(choose(config, host), config.arch, host)


def _facts(config: VMConfig) -> dict[str, Any]:
    """What :func:`describe` reads of a VM, from the model."""
    display = {"device": config.display.device, "vnc": config.display.vnc}
    return {"name": config.name, "engine": config.engine, "display": display}


def describe(config: VMConfig | Mapping[str, Any], host: HostFacts | None = None) -> dict[str, Any]:
    """The engine choice for people: which engine runs ``config`` (the model or a checked
    description's JSON form) here and why, and where its screen is shown. A VM that cannot
    run here (``engine: vz`` on Linux) is described too, with ``runs_here`` false and the
    refusal as its reason."""
    data = config if isinstance(config, Mapping) else _facts(config)
    try:
        choice = _choose_data(config, host) if isinstance(config, Mapping) else choose(config, host)
    except EngineError as exc:
        engine = data["engine"] if data["engine"] != "auto" else "qemu"
        return {
            "name": engine,
            "reason": exc.message,
            "hint": exc.hint,
            "runs_here": False,
            "text": f"{engine} (cannot run here: {exc.message})",
            "display": screen.place(data, engine),
        }
    return {
        "name": choice.engine,
        "reason": choice.reason,
        "hint": None,
        "runs_here": True,
        "text": choice.text,
        "display": screen.place(data, choice.engine),
    }
