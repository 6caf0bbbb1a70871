"""The error tree: library code raises these; only the CLI turns them into exit codes.

Errors cross process boundaries (the supervisor's control socket) as data that names their
class (:meth:`VMDeskError.to_wire`), and are rebuilt as the same class on the other side
(:func:`from_wire`), so a Conflict is a Conflict wherever it is caught.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: this module is on the `vmdesk start` path
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Self


class VMDeskError(Exception):
    """Base of every error VM-Desk raises on purpose; ``hint`` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def to_wire(self) -> dict[str, Any]:
        """JSON data for another process: the message and hint (``error`` and ``hint``, as
        clients from before error kinds read them), the class and its VMDeskError bases."""
        bases = [
            c.__name__
            for c in type(self).__mro__[1:]
            if issubclass(c, VMDeskError) and not c.__name__.startswith("_")
        ]
        return {"error": self.message, "hint": self.hint, "kind": type(self).__name__,
                "bases": bases}  # fmt: skip

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """The error :meth:`to_wire` described, as an instance of ``cls``."""
        return cls(str(data.get("error")), _text(data.get("hint")))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


class HostToolMissing(VMDeskError):
    """A program VM-Desk needs on the host is not installed."""

    exit_code = 3


class ImageBuildError(VMDeskError):
    """Building a guest image failed."""


class EngineError(VMDeskError):
    """The hypervisor process failed or misbehaved."""


class _WithErrorClass(EngineError):
    """An engine-side refusal that carries its speaker's own ``error_class`` across the
    socket, so callers decide on it, never on the message's text."""

    def __init__(self, message: str, hint: str | None = None, error_class: str = "") -> None:
        super().__init__(message, hint)
        self.error_class = error_class

    def to_wire(self) -> dict[str, Any]:
        return {**super().to_wire(), "error_class": self.error_class}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        kind = data.get("error_class")
        return cls(
            str(data.get("error")), _text(data.get("hint")), kind if isinstance(kind, str) else ""
        )


class QMPError(_WithErrorClass):
    """QEMU refused a QMP command; ``error_class`` is QEMU's own (``GenericError``,
    ``DeviceNotFound``...)."""


class EngineNotAnswering(EngineError):
    """The hypervisor process is there but does not answer (stopped with SIGSTOP, or hung)."""


class GuestTimeout(EngineError):
    """The guest did not reach an expected state in time."""


class GuestAgentError(_WithErrorClass):
    """The guest agent (qemu-ga in the guest) refused a command or could not be reached;
    ``error_class`` is qemu-ga's own when it refused (``GenericError``, ``CommandNotFound``...)
    and empty when it never answered."""


class GuestAgentTimeout(GuestAgentError, GuestTimeout):
    """The guest agent did not answer in time: not installed or not running in the guest, the
    guest still booting or paused, or another client holding the agent's socket."""


class NotFound(VMDeskError):
    """A VM, disk or other named thing does not exist."""

    exit_code = 4


class Conflict(VMDeskError):
    """The operation clashes with the current state (name taken, VM running or locked)."""

    exit_code = 5


class Unsupported(VMDeskError):
    """The VM's engine cannot do that at all (a window from QEMU, a screenshot from vz): no
    state of the VM would make it work on this engine."""

    exit_code = 7


class ProtocolError(VMDeskError):
    """A request on a supervisor's control socket is malformed or names no operation it
    serves (a bug in the caller, or two VM-Desk versions that do not understand each other)."""


class BundleError(VMDeskError):
    """A VM bundle on disk is damaged, from a newer VM-Desk, or not a bundle at all."""


class StorageError(VMDeskError):
    """A disk image operation failed (the image is left as it was)."""


class HostError(VMDeskError):
    """Another host (a libvirt daemon) can't be reached, refused us, or failed an operation."""

    exit_code = 8


class PolicyViolation(VMDeskError):
    """The VM's isolation mode forbids what its configuration asks for."""

    exit_code = 6


class Problem:
    """One thing wrong with a VM description: the field, what is wrong, what to do."""

    __slots__ = ("field", "hint", "message")

    def __init__(self, field: str, message: str, hint: str) -> None:
        self.field = field
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def __repr__(self) -> str:
        return f"Problem({self.field!r}, {self.message!r}, {self.hint!r})"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "hint": self.hint}


class ConfigError(VMDeskError):
    """A VM description is invalid; ``problems`` lists each problem with its own hint."""

    exit_code = 2

    def __init__(self, problems: list[Problem], context: str = "") -> None:
        self.problems = problems
        prefix = f"{context}: " if context else ""
        if len(problems) == 1:
            message = prefix + str(problems[0])
            hint = problems[0].hint
        else:
            message = prefix + f"{len(problems)} problems: " + "; ".join(map(str, problems))
            hint = " / ".join(f"{p.field or 'config'}: {p.hint}" for p in problems)
        super().__init__(message, hint)

    def to_wire(self) -> dict[str, Any]:
        return {**super().to_wire(), "problems": [p.as_dict() for p in self.problems]}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        sent = data.get("problems")
        problems = [
            Problem(str(p.get("field", "")), str(p.get("message", "")), str(p.get("hint", "")))
            for p in (sent if isinstance(sent, list) else [])
            if isinstance(p, dict)
        ]
        exc = cls(problems)
        # The message was made with a context this side does not know: keep it as it was.
        exc.message, exc.hint = str(data.get("error")), _text(data.get("hint"))
        exc.args = (exc.message,)
        return exc


# Every kind the wire form can name, by class name (see VMDeskError.to_wire).
KINDS: dict[str, type[VMDeskError]] = {
    kind.__name__: kind
    for kind in (
        VMDeskError, HostToolMissing, ImageBuildError, EngineError, EngineNotAnswering, QMPError,
        GuestTimeout,
        GuestAgentError, GuestAgentTimeout, NotFound, Conflict, Unsupported, ProtocolError,
        BundleError, StorageError, PolicyViolation, ConfigError, HostError,
    )
}  # fmt: skip


def from_wire(
    data: Mapping[str, Any], extra: Mapping[str, type[VMDeskError]] | None = None
) -> VMDeskError:
    """Rebuild the error :meth:`VMDeskError.to_wire` described: its own class when known
    (here or in ``extra``), else its nearest known base; EngineError when the data names no
    kind at all (a process from before error kinds, which sent only ``error`` and ``hint``)."""
    known = {**KINDS, **extra} if extra else KINDS
    bases = data.get("bases")
    names = [data.get("kind"), *(bases if isinstance(bases, list) else ())]
    for name in names:
        if isinstance(name, str) and name in known:
            return known[name].from_wire(data)
    return EngineError.from_wire(data)
