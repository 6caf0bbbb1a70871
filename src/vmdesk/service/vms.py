"""The VMs of the library: list, get, create, edit, delete, clone, validate."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from vmdesk.core import listing
from vmdesk.core.bundle import Bundle
from vmdesk.core.errors import ConfigError, Conflict, Problem
from vmdesk.core.library import Library
from vmdesk.service import image_vms, images
from vmdesk.service import settings as vmsettings
from vmdesk.service.library import find, name_of
from vmdesk.service.settings import Removals, Settings
from vmdesk.supervisor import status as vmstatus

TYPE_CHECKING = False  # the config model (pydantic) only where a description is built
if TYPE_CHECKING:
    from vmdesk.core.config import VMConfig
    from vmdesk.service.remote import Upload

# -- reading ----------------------------------------------------------------------------


def summaries(library: Library) -> list[dict[str, Any]]:
    """One row per VM with its live status, read without the config model (fast)."""
    rows = []
    for row in listing.summaries(library.root):
        bundle_dir = Path(row.pop("path"))
        if row.get("status") != "broken":
            row.update(_runtime_status(bundle_dir))
            row.update(_extra_columns(bundle_dir))
        rows.append(row)
    return rows


def _runtime_status(bundle_dir: Path) -> dict[str, Any]:
    derived = vmstatus.derive(bundle_dir)
    return {"status": derived["status"], "reason": derived.get("reason") or None}


def _extra_columns(bundle_dir: Path) -> dict[str, Any]:
    """What a library page shows beyond `vmdesk list`: display, boot kind, an OS hint."""
    import json

    try:
        data = json.loads((bundle_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    display = data.get("display") if isinstance(data.get("display"), dict) else {}
    boot = data.get("boot") if isinstance(data.get("boot"), dict) else {}
    kind = boot.get("kind", "uefi")
    return {
        "memory_mib": _mib(data.get("memory")),
        "display": display.get("device", "virtio-gpu") != "none" and display.get("vnc", True),
        "boot": kind,
        "os_hint": "linux" if kind == "linux" else None,
    }


def _mib(memory: Any) -> int | None:
    from vmdesk.core.units import MiB, parse_size

    try:
        return parse_size(memory) // MiB if memory is not None else None
    except Exception:  # a damaged field shows as unknown; `get` reports the problem
        return None


def get(library: Library, ref: str) -> dict[str, Any]:
    """A VM's description, live status and runtime facts (sockets, accelerator...), and
    the optional features it asks for with whether its engine gives them. Read without
    building the config model when the description was checked before (fast `show`)."""
    from vmdesk.core import hosts
    from vmdesk.core.errors import VMDeskError
    from vmdesk.engines.registry import describe, engine_for
    from vmdesk.service import features

    host, name = hosts.split(ref)
    if host is not None:  # a VM on another host
        from vmdesk.service import remote

        return remote.get(library, host, name)
    bundle = find(library, ref)
    config = bundle.load_data()
    runtime = vmstatus.derive(bundle.path)
    engine = describe(config)  # which engine runs it here and why, where its screen is
    try:
        capabilities = engine_for(config).capabilities()
    except VMDeskError:
        capabilities = None
    return {
        "name": config["name"],
        "status": runtime["status"],
        "runtime": runtime,
        "path": str(bundle.path),
        "config": config,
        "capabilities": capabilities.as_dict() if capabilities else None,
        "engine": engine,
        # what it asks for that is optional, and whether its engine gives it
        "features": features.of(config, capabilities, engine["reason"]),
        "guest": _guest(bundle, runtime),
        "memory": _memory(
            bundle,
            runtime,
            bool(capabilities and capabilities.balloon and config.get("balloon", True)),
        ),
        # how each disk's I/O ran at the VM's last start, by file (engines/qemu/disk_io.py)
        "disk_io": _disk_io(bundle),
        # what each NAT NIC ran on at the last start (passt or slirp), by NIC index
        "nat": _nat(bundle),
    }


def on_host(library: Library, host: str) -> list[dict[str, Any]]:
    """The rows of host ``host``'s VMs, as `vmdesk list` has them (``name`` is the VM's
    name there; ``HOST:NAME`` refers to it); HostError when the host does not answer."""
    from vmdesk.core import hosts
    from vmdesk.engines.libvirt import listing
    from vmdesk.service import remote_list

    found = hosts.get(library.root, host)
    return listing.rows(found.name, found.uri, remote_list.TIMEOUT)


def _memory(bundle: Bundle, runtime: dict[str, Any], balloon: bool) -> dict[str, Any] | None:
    """A running VM's memory as its guest has it and as the host spends it (the balloon)."""
    if runtime.get("status") not in ("running", "paused") or not balloon:
        return None
    from vmdesk.core.errors import VMDeskError
    from vmdesk.supervisor import client

    try:
        reply = client.call(bundle, "memory", timeout=3.0)
    except VMDeskError:  # it went away meanwhile, or runs an older supervisor
        return None
    reply.pop("ok", None)
    return reply


def _disk_io(bundle: Bundle) -> dict[str, Any]:
    import json

    try:
        plan = json.loads(bundle.files.launch_plan.read_bytes())
        return {io["file"]: io for io in plan["spec"].get("disk_io", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _nat(bundle: Bundle) -> dict[str, Any]:
    import json

    try:
        plan = json.loads(bundle.files.launch_plan.read_bytes())
        return {str(nat["nic"]): nat for nat in plan["spec"].get("nat", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


GUEST_WAIT = 1.0  # `show` of a running VM asks its guest agent, briefly


def _guest(bundle: Bundle, runtime: dict[str, Any]) -> dict[str, Any] | None:
    """What a running guest's agent says of it (OS, addresses), when one answers now."""
    if runtime.get("agents", {}).get("guest_agent") != "connected":
        return None
    from vmdesk.core.errors import VMDeskError
    from vmdesk.supervisor import client

    try:
        reply = client.call(bundle, "guest_info", timeout=GUEST_WAIT + 2, wait=GUEST_WAIT)
    except VMDeskError:  # it went away meanwhile: nothing to say
        return None
    reply.pop("ok", None)
    return reply if reply.get("agent") == "connected" else None


def schema() -> dict[str, Any]:
    from vmdesk.core import config as vmconfig

    return vmconfig.json_schema()


# -- checking a description -------------------------------------------------------------


def paths_in(data: dict[str, Any]) -> list[str]:
    """The host paths a description names (absolute or ~): the user named them, so an
    isolated VM may use them."""
    found = [d.get("file") for d in data.get("disks") or [] if isinstance(d, dict)]
    found += [c.get("file") for c in data.get("cdroms") or [] if isinstance(c, dict)]
    found += [s.get("path") for s in data.get("shares") or [] if isinstance(s, dict)]
    boot = data.get("boot") if isinstance(data.get("boot"), dict) else {}
    found += [boot.get("kernel"), boot.get("initrd")]  # type: ignore[union-attr]
    return [p for p in found if isinstance(p, str) and p.startswith(("/", "~"))]


def build(data: Any, named: Iterable[str] = (), *, context: str = "") -> VMConfig:
    """The checked description, with the host paths in ``named`` approved for it."""
    from vmdesk.core import config as vmconfig
    from vmdesk.core import isolation

    config = vmconfig.from_dict(data, context=context)
    for path in named:
        try:
            isolation.approve(config, path)
        except (ValueError, OSError) as exc:  # e.g. a NUL byte in a path
            raise ConfigError([Problem("", f"{path!r}: {exc}", "name an existing path")]) from None
    return config


def validate(library: Library, data: Any) -> list[Problem]:
    """Every problem with ``data`` as a new VM of this library (empty when it would do)."""
    from vmdesk.core import validation

    try:
        config = build(data, paths_in(data) if isinstance(data, dict) else ())
    except ConfigError as exc:
        return exc.problems
    others = library.configs()
    return validation.host_problems(config, library.path_for(config.name), others)


# -- changing the library ---------------------------------------------------------------


def create(
    library: Library,
    data: dict[str, Any],
    *,
    image: str | None = None,
    settings: Settings | None = None,
    named: Iterable[str] | None = None,
    progress: images.Progress | None = None,
    pull_progress: image_vms.PullProgress | None = None,
    host: str | None = None,
    upload: Upload | None = None,
) -> VMConfig:
    """Add a VM from a description and ``settings`` (the CLI's flags, the API's
    ``settings``). ``image`` is a built-in image (built on first use) or an image to pull
    (a catalog name, a URL with ``settings["digest"]``, a file): the VM's disk is then an
    overlay on it and cloud-init gets a seed. ``named`` are the host paths the user named
    (default: the absolute paths in ``data``, and the paths ``settings`` give). On a
    ``host``, the VM is made by these same rules in a staging library, then its files are
    uploaded to the host (``upload`` is told each file's bytes sent) and nothing stays here."""
    if host is not None:
        from vmdesk.service import remote

        def make(staged: Library) -> VMConfig:
            return create(staged, data, image=image, settings=settings, named=named,
                          progress=progress, pull_progress=pull_progress)  # fmt: skip

        return remote.create(library, host, make, upload)
    data = dict(data)
    s: Settings = settings or {}
    files: dict[str, Path] = {}
    pulled: image_vms.Plan | None = None
    if image in images.IMAGES:
        image_vms.refuse_seed(image, s)
        files = images.use(image, data, progress)
    elif image is not None:
        pulled = image_vms.plan(image, data, s, pull_progress)
    approved = list(paths_in(data) if named is None else named)
    if settings is not None:
        approved += vmsettings.apply(data, settings)
    populate = _new_disk(data, s.get("disk_size")) if pulled is None else None
    config = build(data, approved)
    for optional in ("clipboard", "guest_agent", "balloon"):  # on where the engine gives it
        if optional not in data:
            setattr(config, optional, _engine_gives(config, optional))
    if pulled is None:
        return library.create(config, files, populate).load()
    with image_vms.made(library, pulled, config) as fill:
        return library.create(config, files, fill).load()


def _new_disk(data: dict[str, Any], size: str | int | None) -> Callable[[Path], None] | None:
    """With a size, a new empty qcow2 disk for the VM (its description gains the entry
    now; the image is made in the staged bundle, so the VM appears with it or not at all)."""
    if size is None:
        return None
    from vmdesk.core.units import parse_size
    from vmdesk.storage import images as disk_images

    nbytes = parse_size(size, default_unit="G")
    taken = {d.get("file") for d in data.get("disks") or [] if isinstance(d, dict)}
    names = (f"disks/disk{i}.qcow2" for i in range(len(taken) + 1))
    name = next(n for n in names if n not in taken)
    data.setdefault("disks", []).append({"file": name, "format": "qcow2"})

    def make(staged: Path) -> None:
        disk_images.create(staged / name, nbytes, "qcow2")

    return make


def _engine_gives(config: VMConfig, feature: str) -> bool:
    from vmdesk.core.errors import VMDeskError
    from vmdesk.engines.registry import engine_for

    try:
        return bool(getattr(engine_for(config).capabilities(), feature))
    except VMDeskError:  # no engine runs it here: it gets nothing optional
        return False


def change(
    library: Library, ref: str, settings: Settings, removals: Removals | None = None
) -> tuple[VMConfig, VMConfig]:
    """Change a stopped VM with ``settings`` (after dropping ``removals``); returns the
    description before and the one saved."""
    from vmdesk.core import config as vmconfig

    bundle = find(library, ref)
    before = bundle.load()
    data = vmconfig.to_dict(before)
    vmsettings.remove(data, removals or {})
    named = vmsettings.apply(data, settings)
    return before, library.update(bundle, build(data, named))


def rename(library: Library, ref: str, new_name: str) -> Path:
    """Rename a stopped VM; its bundle directory follows. Returns the new bundle path."""
    return library.rename(name_of(find(library, ref)), new_name).path


def import_bundle(library: Library, source: Path, *, name: str | None = None) -> VMConfig:
    """Copy an existing NAME.vmdesk bundle into the library (under ``name`` if given)."""
    from vmdesk.storage import copying

    return library.import_bundle(source, name=name, copy_file=copying.copy_file).load()


def export(library: Library, ref: str, destination: Path) -> Path:
    """Copy a VM's bundle out of the library (a linked clone's disks are written whole)."""
    from vmdesk.storage import clones

    return clones.export(library, name_of(find(library, ref)), destination)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def edit(library: Library, ref: str, patch: dict[str, Any]) -> VMConfig:
    """Change a stopped VM's description with a merge patch (a new name renames it)."""
    from vmdesk.core import config as vmconfig

    bundle = find(library, ref)
    before = vmconfig.to_dict(bundle.load())
    data = merge_patch(before, patch)
    if str(data.get("uuid")) != before["uuid"]:
        raise ConfigError([Problem("uuid", "cannot be changed", "clone the VM for a new UUID")])
    config = build(data, paths_in(patch))
    renamed = config.name != before["name"]
    if renamed and library.path_for(config.name).exists():
        raise Conflict(f"a VM named {config.name!r} already exists", hint="choose another name")
    saved = library.update(bundle, config)
    if renamed:
        library.rename(name_of(bundle), config.name)
    return saved


def delete(library: Library, ref: str) -> None:
    """Delete a stopped (or suspended) VM with its disks, snapshots and saved state; of a
    VM on a host (``HOST:VM``), its domain, NVRAM and volumes there."""
    from vmdesk.core import hosts
    from vmdesk.storage import clones

    host, name = hosts.split(ref)
    if host is not None:
        from vmdesk.service import remote

        remote.delete(library, host, name)
        return

    library.delete(name_of(find(library, ref)))
    clones.sweep_bases(library)  # a base the VM was the last user of goes too


CloneProgress = Callable[[int, int], None]


def clone(
    library: Library,
    source: str,
    name: str,
    *,
    linked: bool = False,
    forwards: bool = True,
    progress: CloneProgress | None = None,
) -> VMConfig:
    """A new VM ``name`` from the stopped VM ``source`` (full or linked disks); of a VM on a
    host (``HOST:VM``), made on that host."""
    from vmdesk.core import hosts
    from vmdesk.storage import clones

    host, src_name = hosts.split(source)
    to_host, name = hosts.split(name)
    if to_host not in (None, host):
        raise Conflict(
            f"a clone is made where its source is ({host or 'this desk'}), not on {to_host}",
            hint="clone it there, then `vmdesk move` the clone",
        )
    if host is not None:
        from vmdesk.service import remote_clone

        return remote_clone.clone(library, host, src_name, name, linked=linked,
                                  forwards=forwards)  # fmt: skip
    src = find(library, source)
    made = clones.clone(
        library, name_of(src), name, linked=linked, forwards=forwards, progress=progress
    )
    config = made.load()
    image_vms.rekey_seed(made.path, config)  # its own cloud-init instance, name and MAC
    return config
