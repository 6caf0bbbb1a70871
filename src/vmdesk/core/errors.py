"""The error tree: library code raises these; only the CLI turns them into exit codes."""

from __future__ import annotations


class VMDeskError(Exception):
    """Base of every error VM-Desk raises on purpose; ``hint`` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class HostToolMissing(VMDeskError):
    """A program VM-Desk needs on the host is not installed."""

    exit_code = 3


class ImageBuildError(VMDeskError):
    """Building a guest image failed."""


class EngineError(VMDeskError):
    """The hypervisor process failed or misbehaved."""


class QMPError(EngineError):
    """QEMU refused a QMP command; ``error_class`` is QEMU's own (``GenericError``,
    ``DeviceNotFound``...), so callers decide on it, never on the message's text."""

    def __init__(self, message: str, hint: str | None = None, error_class: str = "") -> None:
        super().__init__(message, hint)
        self.error_class = error_class


class GuestTimeout(EngineError):
    """The guest did not reach an expected state in time."""


class NotFound(VMDeskError):
    """A VM, disk or other named thing does not exist."""

    exit_code = 4


class Conflict(VMDeskError):
    """The operation clashes with the current state (name taken, VM running or locked)."""

    exit_code = 5


class BundleError(VMDeskError):
    """A VM bundle on disk is damaged, from a newer VM-Desk, or not a bundle at all."""


class StorageError(VMDeskError):
    """A disk image operation failed (the image is left as it was)."""


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
