"""One VM on disk: the ``NAME.vmdesk/`` directory, its config, and its owner lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from vmdesk.core import checked_configs, layout, listing
from vmdesk.core.errors import BundleError, ConfigError, Conflict, NotFound

TYPE_CHECKING = False  # not typing's: `typing` stays off the VM start path
if TYPE_CHECKING:
    from typing import Any

    from vmdesk.core import config as vmconfig


class Bundle:
    """A VM bundle directory. Paths inside the config are relative to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files = layout.Layout(path)

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r})"

    @property
    def dir_name(self) -> str:
        return self.path.name

    # -- the config ------------------------------------------------------------------

    def _text(self) -> str:
        try:
            return self.files.config.read_text(encoding="utf-8")
        except FileNotFoundError:
            if not self.path.is_dir():
                raise NotFound(
                    f"{self.path} does not exist", hint="see `vmdesk list` for your VMs"
                ) from None
            raise BundleError(
                f"{self.path} has no {layout.CONFIG}: it is not a VM-Desk bundle",
                hint="import a directory that VM-Desk created or exported",
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BundleError(
                f"cannot read {self.files.config}: {exc}",
                hint="check the file's permissions; VM-Desk did not change it",
            ) from None

    def _checked(self, text: str) -> vmconfig.VMConfig:
        # Imported here: starting or stopping a VM needs the bundle, not the (slow to
        # import) pydantic model.
        from vmdesk.core import config as vmconfig

        try:
            config = vmconfig.from_json(text)
        except ConfigError as exc:
            raise ConfigError(exc.problems, context=str(self.files.config)) from None
        checked_configs.remember(text, vmconfig.to_dict(config))
        return config

    def load(self) -> vmconfig.VMConfig:
        """The VM description; a damaged or newer-schema file is reported, never rewritten."""
        return self._checked(self._text())

    def load_data(self) -> dict[str, Any]:
        """The VM description's JSON form, checked exactly as :meth:`load` checks it, but
        without building the model when this text passed its checks before (see
        core.checked_configs): for commands that only read a description."""
        text = self._text()
        known = checked_configs.known(text)
        if known is not None:
            return known
        from vmdesk.core import config as vmconfig

        return vmconfig.to_dict(self._checked(text))

    def save(self, config: vmconfig.VMConfig) -> None:
        """Write the config atomically (the old one stays intact until the new one is whole)."""
        # Imported here: starting or stopping a VM needs neither.
        from vmdesk.core import atomic
        from vmdesk.core import config as vmconfig

        text = vmconfig.to_json(config)
        atomic.write_text(self.files.config, text)
        # The model is built by now, so checking the text again costs little; a text is
        # remembered only once it passes every check.
        with contextlib.suppress(ConfigError):
            checked_configs.remember(text, vmconfig.to_dict(vmconfig.from_json(text)))

    @classmethod
    def create(cls, path: Path, config: vmconfig.VMConfig) -> Bundle:
        """Lay out a new bundle at ``path`` (which must not exist)."""
        path.mkdir(parents=False, exist_ok=False)
        bundle = cls(path)
        for sub in layout.SUBDIRS:
            (path / sub).mkdir()
        bundle.save(config)
        return bundle

    # -- ownership -------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, purpose: str, busy_hint: str | None = None) -> Iterator[None]:
        """Own the bundle exclusively while inside; a second owner gets a clear error
        (with ``busy_hint``, when the caller knows better what to do about it)."""
        fd = os.open(self.files.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                raise Conflict(
                    f"VM {self.path.name.removesuffix(layout.SUFFIX)!r} is in use"
                    + (f" ({holder})" if holder else ""),
                    hint=busy_hint or "wait for it to finish, or stop the VM first",
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}: {purpose}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    def is_locked(self) -> bool:
        """Whether some process owns the bundle right now."""
        return listing.is_locked(self.files.lock)

    def holder(self) -> str:
        try:
            return self.files.lock.read_text().strip()
        except OSError:
            return ""


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""
