"""The library: every VM bundle in one directory (``$VMDESK_HOME`` or the user data dir)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path

from vmdesk.core import layout, lookup, paths, space
from vmdesk.core.bundle import Bundle
from vmdesk.core.errors import BundleError, ConfigError, Conflict, NotFound, VMDeskError
from vmdesk.core.states import AT_REST

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vmdesk.core.config import VMConfig

# The config model (pydantic) is imported only by what reads or checks a description, so
# commands that only find a VM or derive its status start fast.

# Asks the engine layer whether a bundle's VM runs; status is derived, never stored.
StatusProvider = Callable[[Bundle], str]


def _stopped_unless_owned(bundle: Bundle) -> str:
    return "running" if bundle.is_locked() else "stopped"


CopyFile = Callable[[str, str], object]  # shutil.copytree's copy_function


class Library:
    def __init__(self, root: Path | None = None, status: StatusProvider | None = None) -> None:
        self.root = root if root is not None else paths.library_dir()
        self._status = status or _stopped_unless_owned

    # -- looking things up -----------------------------------------------------------

    def bundles(self) -> list[Bundle]:
        if not self.root.is_dir():
            return []
        return [Bundle(p) for p in sorted(self.root.glob(f"*{layout.SUFFIX}")) if p.is_dir()]

    def configs(self, *, skip: Bundle | None = None) -> list[VMConfig]:
        """Every readable VM description (damaged bundles are skipped here)."""
        out = []
        for bundle in self.bundles():
            if skip is not None and bundle.path == skip.path:
                continue
            try:
                out.append(bundle.load())
            except VMDeskError:
                continue
        return out

    def path_for(self, name: str) -> Path:
        return self.root / layout.bundle_dir_name(name)

    def find(self, ref: str) -> Bundle:
        """A VM by name, else by its UUID or a unique UUID prefix (see core.lookup)."""
        return Bundle(lookup.find(self.root, ref))

    def status(self, bundle: Bundle) -> str:
        return self._status(bundle)

    # -- changing the library --------------------------------------------------------

    def _check(self, config: VMConfig, bundle_dir: Path, *, skip: Bundle | None) -> None:
        from vmdesk.core import validation

        others = self.configs(skip=skip)
        validation.assign_macs(config, others)
        problems = validation.host_problems(config, bundle_dir, others)
        if problems:
            raise ConfigError(problems)

    def create(
        self,
        config: VMConfig,
        files: dict[str, Path] | None = None,
        populate: Callable[[Path], None] | None = None,
    ) -> Bundle:
        """Add a new VM; its bundle appears whole or not at all.

        ``files`` maps paths inside the bundle (e.g. ``boot/vmlinuz``) to host files that
        are copied in, and ``populate`` may fill the staged bundle directory, before the
        bundle appears under its name.
        """
        target = self.path_for(config.name)
        if target.exists():
            raise Conflict(
                f"a VM named {config.name!r} already exists",
                hint="choose another name, or `vmdesk delete` the old one",
            )
        if any(c.uuid == config.uuid for c in self.configs()):
            config.uuid = uuidlib.uuid4()
        self._check(config, target, skip=None)
        with self._scratch("create") as tmp:
            staged = Bundle.create(tmp / "vm", config)
            for inside, source in (files or {}).items():
                destination = staged.path / inside
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, destination)
            if populate is not None:
                populate(staged.path)
            _publish(staged.path, target)
        return Bundle(target)

    @contextlib.contextmanager
    def _scratch(self, purpose: str) -> Iterator[Path]:
        """A private directory in the library, named after this process so that
        :meth:`sweep` can tell an abandoned one (its process was killed) from a live one."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.sweep()
        path = Path(tempfile.mkdtemp(prefix=f".{purpose}-{os.getpid()}-", dir=self.root))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def sweep(self) -> list[Path]:
        """Remove what interrupted creates, clones, imports and deletes left behind."""
        removed = []
        for path in self.root.glob(".*-*-*"):
            parts = path.name.split("-")
            if path.is_dir() and parts[1].isdigit() and not _alive(int(parts[1])):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed

    def update(self, bundle: Bundle, config: VMConfig) -> VMConfig:
        """Replace a VM's description after checking it; returns what was saved."""
        with bundle.lock("editing its configuration"):
            return self.save_locked(bundle, config)

    def save_locked(self, bundle: Bundle, config: VMConfig) -> VMConfig:
        """:meth:`update` for a caller that already holds the bundle's lock."""
        from vmdesk.core.config import from_dict, to_dict

        refuse_if_suspended(bundle)
        checked = from_dict(to_dict(config))  # cross-field rules, exactly as on load
        self._check(checked, bundle.path, skip=bundle)
        bundle.save(checked)
        return checked

    def rename(self, ref: str, new_name: str) -> Bundle:
        bundle = self.find(ref)
        config = _renamed(bundle.load(), new_name)
        target = self.path_for(new_name)
        if target.exists():
            raise Conflict(f"a VM named {new_name!r} already exists", hint="choose another name")
        with bundle.lock("being renamed"):
            bundle.save(config)
            bundle.path.rename(target)
        return Bundle(target)

    def delete(self, ref: str) -> Path:
        """Remove a stopped VM and everything in its bundle; returns where it was."""
        bundle = self.find(ref)
        if self.status(bundle) not in AT_REST:  # a suspended VM's saved state goes with it
            raise Conflict(
                f"VM {bundle.dir_name.removesuffix(layout.SUFFIX)!r} is running",
                hint="stop it first (`vmdesk stop NAME`)",
            )
        self.sweep()  # a killed delete's trash too, which nothing else removes
        with bundle.lock("being deleted"):
            # Move it out of the library first, so a crash mid-delete never leaves half a VM.
            trash = Path(tempfile.mkdtemp(prefix=f".delete-{os.getpid()}-", dir=self.root))
            bundle.path.rename(trash / bundle.dir_name)
        shutil.rmtree(trash, ignore_errors=True)
        return bundle.path

    def import_bundle(
        self, source: Path, *, name: str | None = None, copy_file: CopyFile = shutil.copy2
    ) -> Bundle:
        """Copy an existing bundle directory into the library (the source is left alone)."""
        source = source.expanduser().resolve()
        src = Bundle(source)
        config = src.load()  # validates, migrates; errors name the file
        if name is not None:
            config = _renamed(config, name)
        if self.path_for(config.name).exists():
            raise Conflict(
                f"a VM named {config.name!r} already exists",
                hint="import it under another name with --name NEW",
            )
        if any(c.uuid == config.uuid for c in self.configs()):  # a copy of one we have
            config.uuid = uuidlib.uuid4()
            for nic in config.nics:
                nic.mac = None  # a copy must not share the original's MACs
        target = self.path_for(config.name)
        self._check(config, target, skip=None)
        with self._scratch("import") as tmp:
            staged = tmp / "vm"
            _copy_bundle(source, staged, copy_file)
            Bundle(staged).save(config)
            _publish(staged, target)
        return Bundle(target)

    def export(
        self,
        ref: str,
        destination: Path,
        finish: Callable[[Bundle, Path], None] | None = None,
        copy_file: CopyFile = shutil.copy2,
    ) -> Path:
        """Copy a VM's bundle out; ``destination`` is a new path or an existing directory.
        ``finish(bundle, staged_copy)`` may adjust the copy before it appears."""
        bundle = self.find(ref)
        destination = destination.expanduser()
        if destination.is_dir():
            destination = destination / bundle.dir_name
        if destination.exists():
            raise Conflict(f"{destination} already exists", hint="export to a new path")
        if not destination.parent.is_dir():
            raise NotFound(f"{destination.parent} does not exist", hint="create the folder first")
        with bundle.lock("being exported"):
            staged = destination.parent / f".{destination.name}.partial"
            shutil.rmtree(staged, ignore_errors=True)
            try:
                _copy_bundle(bundle.path, staged, copy_file)
                if finish is not None:
                    finish(bundle, staged)
            except BaseException:
                shutil.rmtree(staged, ignore_errors=True)
                raise
            staged.rename(destination)
        return destination


def _copy_bundle(source: Path, target: Path, copy_file: CopyFile = shutil.copy2) -> None:
    """Copy a bundle without what belongs to this host and its runs (lock, run/, plan).
    A file system that fills up is told in one line with what was needed; any other
    failure names the file."""
    not_copied = shutil.ignore_patterns(layout.LOCK, layout.LAUNCH_PLAN, layout.RUN)
    free = space.free_bytes(target.parent)
    try:
        shutil.copytree(source, target, symlinks=True, ignore=not_copied,
                        copy_function=copy_file)  # fmt: skip
    except (OSError, shutil.Error) as exc:
        raise space.copy_failed(exc, source, target.parent, free) from None
    (target / layout.RUN).mkdir(exist_ok=True)


def refuse_if_suspended(bundle: Bundle) -> None:
    """A suspended VM resumes only on the hardware it was saved with: no changes."""
    if bundle.files.suspended_state.exists():
        name = bundle.dir_name.removesuffix(layout.SUFFIX)
        raise Conflict(
            f"VM {name!r} is suspended, and its saved state needs it exactly as it is",
            hint=f"resume it (`vmdesk start {name}`) and stop it first, "
            f"or discard the saved state (`vmdesk stop {name}`)",
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _publish(staged: Path, target: Path) -> None:
    try:
        staged.rename(target)
    except OSError as exc:
        if target.exists():
            raise Conflict(f"{target.name} appeared meanwhile", hint="try again") from None
        raise BundleError(f"could not create {target}: {exc.strerror}") from None


def _renamed(config: VMConfig, name: str) -> VMConfig:
    from vmdesk.core.config import from_dict, to_dict

    return from_dict({**to_dict(config), "name": name})
