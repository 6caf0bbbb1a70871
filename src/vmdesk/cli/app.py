"""The click command tree, loaded lazily: `vmdesk X` imports only the module that defines X
(and `vmdesk --help` none of them), so that start-up stays light. Command bodies import
what they need."""

from __future__ import annotations

import importlib
import time
from gettext import gettext as _
from typing import Any

import click

from vmdesk import __version__
from vmdesk.cli.options import JSON_OUTPUT, print_json
from vmdesk.cli.output import console
from vmdesk.core.arch import ARCHES, default_arch, parse_arch

_VM, _RUN, _STORAGE, _GUEST = (
    "vmdesk.cli.vm_commands",
    "vmdesk.cli.run_commands",
    "vmdesk.cli.storage_commands",
    "vmdesk.cli.guest_commands",
)
# Every command defined elsewhere: where it is ("module", whose `register(group)` adds it, or
# "module:attribute") and its help's first paragraph, which `vmdesk --help` lists without
# importing anything.
# tests/unit/test_cli_startup.py checks this table against the commands themselves.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "app": (
        "vmdesk.cli.app_command:app",
        "Open VM-Desk in its own window, with a tray icon (a second launch shows the first).",
    ),
    "boot-order": (
        _STORAGE,
        "Boot from the CD-ROMs first (installing), the disks first, or the network (PXE).",
    ),
    "cd": (_STORAGE, "CD-ROM media (ISO images, attached read-only)."),
    "clipboard": (
        _GUEST,
        "Print a running guest's clipboard, offer it one, or keep it in step with yours.",
    ),
    "clone": (
        _STORAGE,
        "Make a new VM NAME from the stopped VM SOURCE (new UUID and MACs, fresh NVRAM/TPM).",
    ),
    "console": (_RUN, "Attach this terminal to a VM's serial console (detach with Ctrl-])."),
    "create": (_VM, "Create a VM (nothing is started)."),
    "delete": (_VM, "Delete a stopped VM and all its disks and snapshots."),
    "disk": (_STORAGE, "Disk images: create, inspect, attach, grow, convert."),
    "display": (
        _RUN,
        "Change a VM's display resolution, or show a vz VM's screen in a native window.",
    ),
    "doctor": (
        "vmdesk.cli.doctor_command:doctor",
        "Check QEMU, firmware, the accelerator, swtpm, virtiofsd and free disk space.",
    ),
    "edit": (_VM, "Change a stopped VM's settings (a running VM's memory alone changes live)."),
    "exec": (
        _GUEST,
        "Run a command in a running guest through its agent (vmdesk exec NAME -- CMD).",
    ),
    "export": (_VM, "Copy a VM's bundle out of the library (to a new path or into a folder)."),
    "host": (
        "vmdesk.cli.host_commands",
        "Other hosts (libvirt daemons) whose VMs this desk drives, written HOST:VM.",
    ),
    "import": (_VM, "Copy an existing NAME.vmdesk bundle into the library."),
    "ip": (_GUEST, "Print a running VM's IP address, as its guest agent reports it."),
    "kill": (_RUN, "Kill a VM's hypervisor process at once (unsaved guest data is lost)."),
    "list": (_VM, "List the VMs in the library."),
    "move": (
        "vmdesk.cli.host_commands:move",
        "Move a stopped VM to a libvirt host, back to this desk (--to local), or between hosts.",
    ),
    "open": ("vmdesk.cli.open_command:open_target", "Open the app at a vmdesk:// link or bundle."),
    "pause": (_RUN, "Pause a running VM (its vCPUs stop)."),
    "reboot": (_RUN, "Reset a running VM (like the reset button)."),
    "rename": (_VM, "Rename a stopped VM (its bundle directory follows)."),
    "resume": (_RUN, "Resume a paused VM."),
    "schema": (_VM, "Print the JSON Schema of the VM description."),
    "screenshot": (_RUN, "Save a PNG of a running VM's screen."),
    "show": (_VM, "Show a VM's description and status."),
    "snapshot": (
        _STORAGE,
        "Snapshots of a VM's disks, with its RAM when it runs (a tree: revert, delete).",
    ),
    "ssh": (
        "vmdesk.cli.ssh_command:ssh",
        "Log in to a running VM over SSH, through its forwarded port, as its cloud-init user.",
    ),
    "start": (_RUN, "Start a VM; it keeps running after this command returns."),
    "status": (_RUN, "Show whether a VM runs (derived live, never stored)."),
    "stop": (_RUN, "Stop a VM: the power button, then a forced stop if the guest does not react."),
    "suspend": (
        _RUN,
        "Save a running VM's state to its bundle and stop it; `vmdesk start` resumes it.",
    ),
    "ui": (
        "vmdesk.cli.ui_command:ui",
        "Serve the web UI and its API on 127.0.0.1 and open it in a browser.",
    ),
}


class LazyGroup(click.Group):
    """A group whose commands in ``lazy`` are imported when first asked for by name."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.load(self.lazy[cmd_name][0])
        return self.commands.get(cmd_name)

    def load(self, where: str) -> None:
        """Import the module and add its command, or every command it registers."""
        module, _, attribute = where.partition(":")
        found = importlib.import_module(module)
        if attribute:
            self.add_command(getattr(found, attribute))
        else:
            found.register(self)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and args[0] not in self.lazy:
            # An unknown name: click suggests close ones from the loaded commands, so load all.
            for module in sorted({module for module, _ in self.lazy.values()}):
                self.load(module)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, with the table's help for commands not imported."""
        listed = {
            name: self.commands.get(name) or click.Command(name, help=self.lazy[name][1])
            for name in self.list_commands(ctx)
        }
        shown = [(name, cmd) for name, cmd in listed.items() if not cmd.hidden]
        if not shown:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in shown)
        with formatter.section(_("Commands")):  # click's own title, translated alike
            formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in shown])


ARCH_OPTION = click.option(
    "--arch",
    default=default_arch,
    show_default="this host's",
    help="Guest architecture: " + ", ".join(ARCHES) + " (arm64/amd64 accepted).",
)


@click.group(
    cls=LazyGroup, lazy=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="vmdesk")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """VM-Desk: create, run and manage virtual machines."""


@cli.group()
def image() -> None:
    """Guest images: the built-in tiny Linux and desktop, and cloud images pulled from the
    catalog or a URL."""


@image.command("build")
@click.argument("name", type=click.Choice(["tiny-linux", "debian-desktop"]))
@ARCH_OPTION
@click.option("--force", is_flag=True, help="Rebuild even if a cached image matches.")
def image_build(name: str, arch: str, force: bool) -> None:
    """Build (or reuse from the cache) a guest image from Debian packages.

    tiny-linux is a kernel and a busybox initramfs (seconds); debian-desktop a bootable
    UEFI disk with cloud-init, SSH and an Xfce desktop (minutes; as root).
    """
    from rich.markup import escape

    from vmdesk.cli.progress import step_reporter
    from vmdesk.images import tiny_linux

    if name == "debian-desktop":
        _build_desktop(parse_arch(arch), force)
        return
    started = time.monotonic()
    with step_reporter(console, f"{name} for {parse_arch(arch)}") as report:
        built = tiny_linux.build(parse_arch(arch), progress=report, force=force)
    console.print(
        f"[green]✓[/] {name} {built.arch}: kernel {built.kernel_release} "
        f"({time.monotonic() - started:.1f} s)"
    )
    console.print(f"  kernel  {escape(str(built.kernel))}")
    console.print(f"  initrd  {escape(str(built.initrd))}")
    if built.efi_kernel_file is not None and built.efi_kernel != built.kernel:
        console.print(f"  efi     {escape(str(built.efi_kernel))} (for UEFI boot)")
    console.print(f"  from    {', '.join(built.packages)}")


def _build_desktop(arch: str, force: bool) -> None:
    from rich.markup import escape

    from vmdesk.cli.progress import step_reporter
    from vmdesk.core.units import human_size
    from vmdesk.service import images

    started = time.monotonic()
    with step_reporter(console, f"debian-desktop for {arch}") as report:
        built = images.build_desktop(arch, report, force=force)
    console.print(
        f"[green]✓[/] debian-desktop {built.arch}: kernel {built.kernel_release}, "
        f"{len(built.packages)} packages ({time.monotonic() - started:.1f} s)"
    )
    console.print(
        f"  disk      {escape(str(built.disk))} ({human_size(built.disk.stat().st_size)})"
    )
    console.print(f"  manifest  {escape(str(built.manifest))} (every package's version)")
    console.print(f"  use it    vmdesk create NAME --image debian-desktop --arch {built.arch}")


@image.command("list")
@JSON_OUTPUT
def image_list(as_json: bool) -> None:
    """List the built images, the catalog (and which of it is cached) and pulled images."""
    from vmdesk.service import images

    listing = {"built": images.built(), "catalog": images.catalog(), "pulled": images.pulled()}
    if as_json:
        print_json(listing)
    else:
        _print_images(listing)


def _print_images(listing: dict[str, list[dict[str, Any]]]) -> None:
    from rich.markup import escape

    from vmdesk.core.units import human_size

    for one in listing["built"]:
        where = one.get("disk") or one["directory"]
        console.print(
            f"{one['name']:15} {one['arch']:8} {one['kernel_release']:20} {escape(where)}"
        )
    if not listing["built"]:
        console.print("no images built yet; try `vmdesk image build tiny-linux --arch aarch64`")
    console.print("\ncatalog (`vmdesk image pull NAME --arch ARCH`):")
    rows = [("NAME", "ARCH", "FORMAT", "CONTENTS", "CACHED", "SIZE", "DESCRIPTION")]
    for row in listing["catalog"]:
        contents = ("cloud-init " if row["cloud_init"] else "") + row["kind"]
        size = human_size(row["size"]) if row["size"] is not None else "-"
        cached = "yes" if row["cached"] else "no"
        rows.append((row["name"], row["arch"], row["format"], contents, cached, size,
                     row["description"]))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        line = "  ".join(f"{c:{w}}" for c, w in zip(r, widths, strict=False)) + "  " + r[-1]
        console.print(escape(line))
    for row in listing["pulled"]:
        console.print(
            f"pulled  {escape(row['file'])}  {human_size(row['size'])}  {escape(row['path'])}"
            f"  (from {escape(str(row['url']))})"
        )


@image.command("pull")
@click.argument("ref", metavar="NAME|URL|FILE")
@click.option("--arch", default=None, help="For a catalog image (default: this host's).")
@click.option("--digest", default=None, help="sha256:HEX or sha512:HEX; required for a URL.")
def image_pull(ref: str, arch: str | None, digest: str | None) -> None:
    """Download a catalog image (or a URL with its digest) into the cache, checked."""
    from rich.markup import escape

    from vmdesk.core.units import human_size
    from vmdesk.service import images

    source = images.source(ref, arch, digest)
    if source.url is None:  # a local file: used where it is, checked if a digest was given
        images.pull(ref, arch, digest)
        checked = ", digest checked" if digest else ""
        console.print(f"{escape(str(source.path))} is a local file: used where it is{checked}")
        return
    if source.path.is_file():
        console.print(f"{escape(source.name)} is already cached: {escape(str(source.path))}")
        return
    from vmdesk.cli.progress import transfer_progress

    with transfer_progress(console, source.name) as progress:
        path = images.pull(ref, arch, digest, progress=progress)
    console.print(
        f"[green]✓[/] {escape(source.name)}: {escape(str(path))} "
        f"({human_size(path.stat().st_size)}, digest checked)"
    )


@image.command("rm")
@click.argument("name")
@click.option("--arch", default=None, help="Only this architecture's copy (default: every).")
def image_rm(name: str, arch: str | None) -> None:
    """Delete a pulled image from the cache (a catalog name, or a pulled file or digest)."""
    from rich.markup import escape

    from vmdesk.service import images

    for path in images.remove(name, arch):
        console.print(f"removed {escape(str(path))}")


@cli.command()
@ARCH_OPTION
@click.option(
    "--refresh", is_flag=True, help="Probe KVM again instead of reusing this boot's result."
)
def accel(arch: str, refresh: bool) -> None:
    """Show which accelerator a guest would run with here, and why."""
    from rich.markup import escape

    from vmdesk.engines.qemu import accel as qemu_accel

    choice = qemu_accel.choose(parse_arch(arch), refresh=refresh)
    console.print(f"{choice.accel}: {escape(choice.reason)}")


@cli.command()
@ARCH_OPTION
@click.option(
    "--accel",
    "accel_name",
    default=None,
    help="auto (default), kvm, hvf or tcg; also read from $VMDESK_ACCEL.",
)
def demo(arch: str, accel_name: str | None) -> None:
    """Build the tiny Linux guest, boot it, show its console, power it off."""
    from vmdesk.cli import demo as demo_cmd

    demo_cmd.run(console, parse_arch(arch), accel_name)
