"""The isolation policy: what an ``isolated`` VM may touch on the host.

Every engine calls :func:`enforce` before starting a VM, so the policy lives in one place and
no engine can forget a rule. An isolated VM gets NAT networking only, no USB passthrough, no
raw host devices, and host files only from its own bundle or from paths the user named
explicitly (recorded by :func:`approve` in ``approved_paths``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from vmdesk.core.config import LinuxBoot, VMConfig
from vmdesk.core.errors import PolicyViolation, Problem
from vmdesk.core.host_paths import is_device, joined, resolve


def _host_paths(config: VMConfig) -> Iterator[tuple[str, str, bool]]:
    """(field, path, is_block_storage) for every host path the VM reads or writes."""
    for index, disk in enumerate(config.disks):
        yield f"disks[{index}].file", disk.file, True
    for index, cdrom in enumerate(config.cdroms):
        yield f"cdroms[{index}].file", cdrom.file, True
    for index, share in enumerate(config.shares):
        yield f"shares[{index}].path", share.path, False
    if isinstance(config.boot, LinuxBoot):
        yield "boot.kernel", config.boot.kernel, False
        if config.boot.initrd is not None:
            yield "boot.initrd", config.boot.initrd, False


Backing = Callable[[Path], "list[str] | None"]  # an image's backing files, None: unknown


def problems(config: VMConfig, bundle_dir: Path, backing: Backing | None = None) -> list[Problem]:
    """Everything the VM's isolation mode forbids; [] for unrestricted VMs. ``backing``
    reads a disk image's backing chain (the files QEMU opens below it), judged like the
    disk itself; linked clones' bases in the library's .bases are the library's own."""
    if config.isolation == "unrestricted":
        return []
    unrestrict = f"or run `vmdesk edit {config.name} --isolation unrestricted`"
    found: list[Problem] = []
    for index, nic in enumerate(config.nics):
        if nic.mode == "bridged":
            found.append(
                Problem(
                    f"nics[{index}].mode",
                    "bridged networking puts an isolated VM on the host's network",
                    f"use NAT networking (--nic nat) {unrestrict}",
                )
            )
    for index, device in enumerate(config.usb_devices):
        found.append(
            Problem(
                f"usb_devices[{index}]",
                f"USB passthrough of {device} hands a host device to an isolated VM",
                f"remove the USB device {unrestrict}",
            )
        )
    return found + _path_problems(config, bundle_dir, backing, unrestrict)


def _path_problems(
    config: VMConfig, bundle_dir: Path, backing: Backing | None, unrestrict: str
) -> list[Problem]:
    """The host files the VM names: its bundle's, or ones the user named (and images in
    them may stand on nothing else); never a raw device, never a second name of a file."""
    found: list[Problem] = []
    # Resolve the allowed roots too: approved_paths may be hand-edited or hold symlinks.
    roots = [resolve(".", bundle_dir)]
    roots += [resolve(approved, bundle_dir) for approved in config.approved_paths]
    bases = resolve("../.bases", bundle_dir)  # the library's own, below linked clones
    for field, raw, storage in _host_paths(config):
        path = resolve(raw, bundle_dir)
        if storage and path.is_file():
            if backing is not None:
                found += _below(field, path, backing, [*roots, bases], unrestrict)
            if _linked_out(path, roots[0], roots[1:]):
                found.append(
                    Problem(
                        field,
                        f"{raw} is a hard link: the same file has another name, maybe "
                        "outside the VM's bundle",
                        f"give it a copy of its own (cp {raw} {raw}.new, then mv it back), "
                        f"or add the path to the VM explicitly, {unrestrict}",
                    )
                )
        if storage and is_device(path):
            # Refused even when approved: a raw device exposes far more than one file.
            found.append(
                Problem(
                    field,
                    f"{path} is a raw host device, which an isolated VM may not use",
                    f"use a disk image file instead {unrestrict}",
                )
            )
        elif not any(path.is_relative_to(root) for root in roots):
            shown = raw if str(path) == raw else f"{raw} (resolves to {path})"
            found.append(
                Problem(
                    field,
                    f"{shown} is outside the VM's bundle and the paths you added to this VM",
                    "add the path to the VM explicitly (naming it yourself approves it), "
                    f"move it into the VM's bundle, {unrestrict}",
                )
            )
    return found


def _below(
    field: str, image: Path, backing: Backing, roots: list[Path], unrestrict: str
) -> list[Problem]:
    """A disk's backing files must stay where the disk itself may be."""
    chain = backing(image)
    if chain is None:
        return [
            Problem(
                field,
                f"{image}'s backing chain cannot be read to check it",
                f"convert it to a standalone image (`vmdesk disk convert`) {unrestrict}",
            )
        ]
    outside = [
        layer
        for layer in chain
        if not any(Path(os.path.realpath(layer)).is_relative_to(r) for r in roots)
    ]
    return [Problem(field, f"{image} is an overlay on {layer}, outside the VM's bundle and "
                    "the paths you added to this VM",
                    f"attach a standalone copy (`vmdesk disk convert`), {unrestrict}")
            for layer in outside]  # fmt: skip


def _linked_out(path: Path, bundle: Path, approved: list[Path]) -> bool:
    """A file inside the bundle with more than one name (and not approved by name): its
    other names may be anywhere, so the bundle does not hold it alone."""
    if not path.is_relative_to(bundle) or any(path.is_relative_to(a) for a in approved):
        return False
    return os.stat(path).st_nlink > 1


def enforce(config: VMConfig, bundle_dir: Path, backing: Backing | None = None) -> None:
    """Raise PolicyViolation listing every problem, if the isolation mode forbids anything."""
    found = problems(config, bundle_dir, backing)
    if not found:
        return
    count = "1 thing" if len(found) == 1 else f"{len(found)} things"
    message = f"VM {config.name!r} is isolated but asks for {count} isolation forbids: " + (
        "; ".join(map(str, found))
    )
    hint = " / ".join(f"{p.field}: {p.hint}" for p in found)
    raise PolicyViolation(message, hint)


def approve(config: VMConfig, path: str | Path) -> None:
    """Record a host path the user named explicitly (resolved, once) in approved_paths."""
    # Resolved against the cwd: the user typed it on the command line, not in the bundle.
    resolved = str(resolve(str(path), Path.cwd()))
    if resolved not in config.approved_paths:
        # Reassigned rather than appended so pydantic validates the new value.
        config.approved_paths = [*config.approved_paths, resolved]


def resolutions(config: VMConfig, bundle_dir: Path) -> list[tuple[str, str, bool]]:
    """(path as named, where it resolves, is a device) for every path the policy judged.

    The verdict of :func:`problems` holds for as long as these do, which is what lets a
    cached launch plan skip the config model (see vmdesk.supervisor.launch_plan).
    """
    if config.isolation == "unrestricted":
        return []
    named = [".", *config.approved_paths, *(raw for _, raw, _ in _host_paths(config))]
    found = []
    for raw in named:
        path = joined(raw, bundle_dir)
        real = os.path.realpath(path)
        found.append((path, real, is_device(real)))
    return found
