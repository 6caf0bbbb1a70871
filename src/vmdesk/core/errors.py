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


class GuestTimeout(EngineError):
    """The guest did not reach an expected state in time."""
