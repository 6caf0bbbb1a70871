"""VM library commands: create, list, show, edit, rename, delete, import, export, schema."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from vmdesk.cli.options import JSON_OUTPUT, print_json
from vmdesk.cli.output import console
from vmdesk.core.errors import VMDeskError

F = Callable[..., Any]


def _vm_options(func: F) -> F:
    """The options shared by `create` and `edit` (None means "leave as it is")."""
    options = [
        click.option("--arch", help="Guest architecture: aarch64 or x86_64 (default: the host's)."),
        click.option("--engine", type=click.Choice(["auto", "qemu", "vz"]), help="Engine."),
        click.option("--cpus", type=int, help="Virtual CPUs."),
        click.option("--memory", help="Memory, e.g. 2GiB or 512M."),
        click.option("--boot", type=click.Choice(["uefi", "bios", "linux"]), help="Boot method."),
        click.option("--secure-boot/--no-secure-boot", default=None, help="UEFI secure boot."),
        click.option("--kernel", help="Kernel for --boot linux."),
        click.option("--initrd", help="Initrd for --boot linux."),
        click.option("--cmdline", help="Kernel command line for --boot linux."),
        click.option("--disk", "disks", multiple=True, help="Attach a disk image (repeatable)."),
        click.option("--iso", "isos", multiple=True, help="Attach an ISO as a CD-ROM."),
        click.option(
            "--nic", "nics", multiple=True,
            help="nat (nat:passt, nat:slirp: its backend), none or bridged:IFACE.",
        ),
        click.option("--mac", help="MAC address of the first NIC."),
        click.option(
            "--forward", "forwards", multiple=True,
            help="Port forward [tcp|udp:][ADDR:]HOST:GUEST on the first NIC (repeatable).",
        ),
        click.option(
            "--share",
            "shares",
            multiple=True,
            help="Shared folder PATH[:TAG][:ro][:virtiofs|9p] (default: VirtioFS if available).",
        ),
        click.option(
            "--display", type=click.Choice(["virtio-gpu", "ramfb", "none"]), help="Graphics."
        ),
        click.option("--resolution", help="Display size WIDTHxHEIGHT, e.g. 1920x1080."),
        click.option("--vnc/--no-vnc", default=None, help="Serve the screen over VNC."),
        click.option("--tpm/--no-tpm", default=None, help="Emulated TPM 2.0."),
        click.option("--clipboard/--no-clipboard", default=None, help="Clipboard sharing."),
        click.option(
            "--guest-agent/--no-guest-agent",
            default=None,
            help="A channel for the guest's qemu-guest-agent (vmdesk ip, exec).",
        ),
        click.option(
            "--balloon/--no-balloon",
            default=None,
            help="A memory balloon: freed guest memory goes back to the host.",
        ),
        click.option("--usb", "usbs", multiple=True, help="USB passthrough VENDOR:PRODUCT."),
        click.option(
            "--isolation", type=click.Choice(["isolated", "unrestricted"]),
            help="isolated (default) or unrestricted (bridged, USB, any path).",
        ),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _settings(options: dict[str, Any]) -> Any:
    """The flags as the service's Settings (the same rules serve the web API)."""
    from vmdesk.service.settings import Settings

    return Settings(**options)  # type: ignore[typeddict-item]


def _read_file(path: str) -> dict[str, Any]:
    from vmdesk.core.errors import ConfigError, Problem

    text = Path(path).expanduser().read_text(encoding="utf-8")
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (ValueError, ImportError) as exc:
        raise ConfigError([Problem("", f"cannot parse {path}: {exc}", "fix the syntax")]) from None
    except Exception as exc:  # yaml.YAMLError and friends
        raise ConfigError([Problem("", f"cannot parse {path}: {exc}", "fix the syntax")]) from None
    if not isinstance(data, dict):
        raise ConfigError(
            [Problem("", f"{path} does not hold one VM description", "see `vmdesk schema`")]
        )
    return data


def _library() -> Any:
    from vmdesk.service import library

    return library.open()


def _describe(config: Any) -> str:
    from vmdesk.core import config as vmconfig

    return _summary(vmconfig.to_dict(config))


def _image_options(func: F) -> F:
    """The options of a VM made from an image: which, its disk size, its cloud-init seed."""
    options = [
        click.option("--image", metavar="IMAGE",
                     help="tiny-linux (built-in), a catalog image (`vmdesk image list`), a "
                          "URL (with --digest) or an image file: the VM's disk is an overlay "
                          "on it."),
        click.option("--digest", help="sha256:HEX or sha512:HEX of an --image URL."),
        click.option("--disk-size",
                     help="The disk's size, e.g. 32GiB: the image's disk grown to it, or "
                          "without --image a new empty disk (qcow2)."),
        click.option("--user", help="cloud-init: the guest user (default: yours)."),
        click.option("--ssh-key", "ssh_keys", multiple=True,
                     help="cloud-init: a public key file to log in with (repeatable)."),
        click.option("--password", "ask_password", is_flag=True,
                     help="cloud-init: ask for the user's password (stored only hashed)."),
        click.option("--timezone", help="cloud-init: the guest's time zone, e.g. Europe/Paris."),
        click.option("--package", "packages", multiple=True,
                     help="cloud-init: a package to install at first boot (repeatable)."),
        click.option("--cloud-init", "cloud_init",
                     help="cloud-init: your own user-data YAML, merged into VM-Desk's."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


@click.command()
@click.argument("name")
@click.option("--from-file", "from_file", help="Start from a JSON or YAML description.")
@click.option("--host", help="Create it on this host (`vmdesk host list`), not on this one.")
@_image_options
@_vm_options
def create(
    name: str, from_file: str | None, image: str | None, ask_password: bool, **options: Any
) -> None:
    """Create a VM (nothing is started)."""
    from vmdesk.service import vms

    data = _read_file(from_file) if from_file else {}
    data["name"] = name
    library = _library()
    named = vms.paths_in(data) if from_file else []  # the user's own file names them
    if ask_password:
        options["password"] = _ask_password()
    host = options.pop("host", None)
    if image is not None and options.get("arch"):
        data["arch"] = options["arch"]
    if image is not None:
        config = _create_from_image(library, image, data, options, named, host)
    else:
        with _upload_bar(host) as upload:
            config = vms.create(library, data, settings=_settings(options), named=named,
                                host=host, upload=upload)  # fmt: skip
    if host is not None:
        console.print(f"[green]✓[/] created VM [bold]{escape(host)}:{escape(config.name)}[/] "
                      f"({_describe(config)})")  # fmt: skip
        return
    console.print(f"[green]✓[/] created VM [bold]{escape(config.name)}[/] ({_describe(config)})")
    console.print(f"  bundle  {escape(str(library.path_for(config.name)))}")


@contextmanager
def _upload_bar(host: str | None) -> Iterator[Any]:
    """For a VM made for a host, the upload's progress bar, shown from its first byte (not
    while the VM is being made on the desk); None for a VM made here."""
    if host is None:
        yield None
        return
    from vmdesk.cli.progress import transfer_progress

    with ExitStack() as stack:
        bar: list[Any] = []

        def sent(_file: str, done: int, total: int) -> None:
            if not bar:
                bar.append(stack.enter_context(
                    transfer_progress(console, f"uploading to host {host}")))  # fmt: skip
            bar[0](done, total)

        yield sent


def _ask_password() -> str:
    if not sys.stdin.isatty():
        raise VMDeskError(
            "--password asks on a terminal, and there is none",
            hint="run it on a terminal, or log in with --ssh-key instead",
        )
    password = str(click.prompt("Password for the guest user", hide_input=True,
                                confirmation_prompt=True))  # fmt: skip
    return password


def _create_from_image(
    library: Any,
    image: str,
    data: dict[str, Any],
    options: dict[str, Any],
    named: list[str],
    host: str | None = None,
) -> Any:
    """A built-in image (built on first use) or one to pull, showing the steps or the
    download's progress (then, for a host, the upload's)."""
    from vmdesk.cli.progress import step_reporter, transfer_progress
    from vmdesk.service import images, vms

    settings = _settings(options)
    if image in images.IMAGES:
        arch = data.get("arch") or "this host's architecture"
        with step_reporter(console, f"{image} image for {arch}") as report, \
                _upload_bar(host) as upload:  # fmt: skip
            return vms.create(library, data, image=image, settings=settings, named=named,
                              progress=report, host=host, upload=upload)  # fmt: skip
    with transfer_progress(console, f"downloading {image}") as pulled, _upload_bar(host) as upload:
        return vms.create(library, data, image=image, settings=settings, named=named,
                          pull_progress=pulled, host=host, upload=upload)  # fmt: skip


@click.command("list")
@JSON_OUTPUT
def list_vms(as_json: bool) -> None:
    """List the VMs in the library."""
    from vmdesk.cli import fast_list

    fast_list.run(as_json)


@click.command()
@click.argument("vm")
@JSON_OUTPUT
def show(vm: str, as_json: bool) -> None:
    """Show a VM's description and status."""
    from vmdesk.service import vms

    found = vms.get(_library(), vm)
    if as_json:
        print_json(found)
        return
    config, runtime = found["config"], found["runtime"]
    console.print(f"[bold]{escape(config['name'])}[/]  {found['status']}  ({config['uuid']})")
    console.print(f"  {_summary(config)}")
    if found.get("host"):
        console.print(f"  host     {escape(found['host'])} (its files are in the host's pool)")
    else:
        console.print(f"  bundle   {escape(found['path'])}")
    engine = found["engine"]
    console.print(f"  engine   {escape(engine['text'])}")
    for line in _devices(config, found.get("disk_io") or {}, found.get("nat") or {}):
        console.print(f"  {escape(line)}")
    console.print(f"  extras   {_extras(config, found['features'])}")
    if runtime.get("reason"):
        console.print(f"  [red]last exit[/] {escape(str(runtime['reason']))}")
    if runtime.get("agents"):
        agents = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in runtime["agents"].items())
        console.print(f"  agents   {escape(agents)}")
    guest = found.get("guest")
    if guest:
        os_name = (guest.get("os") or {}).get("name") or "unknown OS"
        address = guest.get("ipv4") or guest.get("ipv6") or "no address yet"
        console.print(f"  guest    {escape(os_name)}, {escape(address)} ({guest['host_name']})")
    if found.get("memory"):
        mem = found["memory"]
        host = f", the host spends {_mib(mem['host_rss'])}" if mem.get("host_rss") else ""
        console.print(f"  memory   guest {_mib(mem['guest'])} of {_mib(mem['booted'])}{host}")
    if runtime.get("accel"):
        console.print(f"  accel    {escape(str(runtime['accel']))}")
    if runtime.get("vnc"):
        console.print(f"  vnc      unix socket {escape(str(runtime['vnc']))}")
    if runtime.get("console"):
        console.print(f"  console  `vmdesk console {escape(config['name'])}`")
    if (engine["display"] or {}).get("kind") == "window":
        console.print(f"  screen   `{escape(engine['display']['command'])}` (a native window)")


def _mib(size: int) -> str:
    return f"{size >> 20} MiB"


def _summary(c: dict[str, Any]) -> str:
    """One line about a description's JSON form (as `_describe` says it of the model)."""
    boot = c["boot"]["kind"] + (" + secure boot" if c["boot"].get("secure_boot") else "")
    return (
        f"{c['arch']}, {c['cpus']} vCPU, {c['memory']}, boot {boot}, {len(c['disks'])} "
        f"disk(s), {len(c['nics'])} NIC(s), isolation {c['isolation']}"
    )


def _devices(
    c: dict[str, Any], disk_io: dict[str, Any], nat: dict[str, Any] | None = None
) -> list[str]:
    """The disks, CDs, NICs, shares and display of a description's JSON form (with how
    each disk's I/O ran, and what each NAT NIC ran on, at the last start, when known)."""
    lines = []
    for i, d in enumerate(c["disks"]):
        lines.append(f"disk{i}    {d['file']} ({d['format']}, {d['interface']})")
        lines.append(f"         I/O {_disk_io_text(d, disk_io.get(d['file']))}")
    lines += [f"cdrom    {cd['file']}" for cd in c["cdroms"]]
    for i, nic in enumerate(c["nics"]):
        fwd = ", ".join(
            f"{f['protocol']}:{f['host_address']}:{f['host_port']}:{f['guest_port']}"
            for f in nic["forwards"]
        )
        bridge = f" {nic['bridge']}" if nic.get("bridge") else ""
        lines.append(
            f"nic{i}     {nic['mode']}{bridge} {nic.get('mac') or ''}"
            + (f"  forwards {fwd}" if fwd else "")
        )
        if nic["mode"] == "nat":
            lines.append(f"         NAT {_nat_text(nic, (nat or {}).get(str(i)))}")
    for share in c["shares"]:
        ro = ", read-only" if share["read_only"] else ""
        lines.append(f"share    {share['tag']} -> {share['path']} ({share['mode']}{ro})")
    d = c["display"]
    vnc = "on" if d["vnc"] else "off"
    lines.append(f"display  {d['device']} {d['width']}x{d['height']}, VNC {vnc}")
    return lines


def _nat_text(nic: dict[str, Any], ran: dict[str, Any] | None) -> str:
    """What a NAT NIC asks for, and what it ran on at the last start."""
    asked = {"auto": "passt where installed, else slirp", "passt": "passt",
             "slirp": "slirp"}.get(nic.get("backend", "auto"), "?")  # fmt: skip
    if ran is None:
        return asked
    return f"{asked}; last start: {ran['backend']} ({ran.get('reason', '')})"


def _disk_io_text(disk: dict[str, Any], io: dict[str, Any] | None) -> str:
    """What a disk asks for, and what it got at the last start."""
    asked = [f"cache {disk.get('cache', 'auto')}", f"aio {disk.get('aio', 'auto')}"]
    if disk.get("interface") == "virtio-blk":
        asked.append("iothread" if disk.get("iothread", True) else "no iothread")
        asked.append(f"{disk['queues']} queues" if disk.get("queues") else "a queue per vCPU")
    asked.append("discard" if disk.get("discard", True) else "no discard")
    text = ", ".join(asked)
    if io is None:
        return text
    got = [f"aio={io['aio']}", "O_DIRECT" if io["direct"] else "page cache"]
    if io.get("l2_cache"):
        got.append(f"L2 cache {io['l2_cache'] >> 20} MiB")
    note = f"; {io['note']}" if io.get("note") else ""
    return f"{text}; last start: {', '.join(got)}{note}"


def _extras(config: dict[str, Any], features: list[dict[str, Any]]) -> str:
    """TPM, clipboard and USB as asked for, each marked when its engine can't give it."""
    names = {"tpm": "TPM", "clipboard": "clipboard", "guest_agent": "guest agent",
             "balloon": "memory balloon",
             "usb_passthrough": "USB"}  # fmt: skip
    shown = []
    for feature in features:
        if feature["name"] not in names:
            continue
        text = names[feature["name"]]
        if feature["name"] == "usb_passthrough":
            usbs = config["usb_devices"]
            text += " " + ", ".join(f"{u['vendor_id']}:{u['product_id']}" for u in usbs)
        if not feature["available"]:
            text += f" (unavailable: {feature['reason']})"
        shown.append(text)
    return escape(", ".join(shown) or "none")


@click.command()
@click.argument("vm")
@click.option("--remove-share", "remove_shares", multiple=True, help="Remove the share with TAG.")
@click.option(
    "--remove-forward",
    "remove_forwards",
    multiple=True,
    type=int,
    help="Remove HOST_PORT's forward.",
)
@click.option("--remove-usb", "remove_usbs", multiple=True, help="Remove USB VENDOR:PRODUCT.")
@_vm_options
def edit(
    vm: str,
    remove_shares: tuple[str, ...],
    remove_forwards: tuple[int, ...],
    remove_usbs: tuple[str, ...],
    **options: Any,
) -> None:
    """Change a stopped VM's settings (a running VM's memory alone changes live)."""
    from vmdesk.service import memory, vms

    removals = {"shares": remove_shares, "forwards": remove_forwards, "usbs": remove_usbs}
    settings = _settings(options)
    if not any(removals.values()) and memory.applies_live(_library(), vm, settings):
        now = memory.set_memory(_library(), vm, settings["memory"])
        console.print(f"[green]✓[/] {escape(vm)}'s guest now has {_mib(now['guest'])} of the "
                      f"{_mib(now['booted'])} it booted with, for this run")  # fmt: skip
        return
    before, saved = vms.change(_library(), vm, settings, removals)  # type: ignore[arg-type]
    console.print(f"[green]✓[/] updated VM [bold]{escape(saved.name)}[/] ({_describe(saved)})")
    if before.isolation != saved.isolation:
        console.print(f"  isolation is now [bold]{saved.isolation}[/]")


@click.command()
@click.argument("vm")
@click.argument("new_name")
def rename(vm: str, new_name: str) -> None:
    """Rename a stopped VM (its bundle directory follows)."""
    from vmdesk.service import vms

    path = vms.rename(_library(), vm, new_name)
    console.print(f"[green]✓[/] renamed to [bold]{escape(new_name)}[/] ({escape(str(path))})")


@click.command()
@click.argument("vm")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete(vm: str, yes: bool) -> None:
    """Delete a stopped VM and all its disks and snapshots."""
    from vmdesk.service import library as service_library
    from vmdesk.service import vms

    library = _library()
    if ":" in vm:
        _delete_on_host(library, vm, yes)
        return
    bundle = service_library.find(library, vm)
    if not yes:
        if not sys.stdin.isatty():
            raise VMDeskError(
                f"deleting {vm!r} needs confirmation", hint=f"run `vmdesk delete {vm} --yes`"
            )
        click.confirm(
            f"Delete VM {vm!r} with all its disks and snapshots ({bundle.path})?", abort=True
        )
    vms.delete(library, vm)
    console.print(f"[green]✓[/] deleted {escape(vm)}")


@click.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", help="Import under a different name.")
def import_vm(path: Path, name: str | None) -> None:
    """Copy an existing NAME.vmdesk bundle into the library."""
    from vmdesk.service import vms

    config = vms.import_bundle(_library(), path, name=name)
    console.print(f"[green]✓[/] imported [bold]{escape(config.name)}[/] ({_describe(config)})")


@click.command("export")
@click.argument("vm")
@click.argument("destination", type=click.Path(path_type=Path))
def export_vm(vm: str, destination: Path) -> None:
    """Copy a VM's bundle out of the library (to a new path or into a folder)."""
    from vmdesk.service import vms

    target = vms.export(_library(), vm, destination)
    console.print(f"[green]✓[/] exported {escape(vm)} to {escape(str(target))}")


@click.command()
def schema() -> None:
    """Print the JSON Schema of the VM description."""
    from vmdesk.service import vms

    print_json(vms.schema())


def _delete_on_host(library: Any, vm: str, yes: bool) -> None:
    from vmdesk.service import lifecycle, remote

    host, name = lifecycle.on_host(vm) or ("", vm)
    if not yes:
        if not sys.stdin.isatty():
            raise VMDeskError(
                f"deleting {vm!r} needs confirmation", hint=f"run `vmdesk delete {vm} --yes`"
            )
        click.confirm(f"Delete VM {name!r} and its files from host {host}?", abort=True)
    removed = remote.delete(library, host, name)
    console.print(f"[green]✓[/] deleted {escape(vm)} ({len(removed)} file(s) on host {host})")


def register(group: click.Group) -> None:
    for command in (create, list_vms, show, edit, rename, delete, import_vm, export_vm, schema):
        group.add_command(command)
