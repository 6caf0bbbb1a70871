"""The click command tree. Command bodies import what they need, so start-up stays light."""

from __future__ import annotations

import time

import click
from rich.markup import escape

from vmdesk import __version__
from vmdesk.cli import doctor_command, run_commands, storage_commands, ui_command, vm_commands
from vmdesk.cli.output import console
from vmdesk.core.arch import ARCHES, default_arch, parse_arch
from vmdesk.core.errors import VMDeskError

ARCH_OPTION = click.option(
    "--arch",
    default=default_arch,
    show_default="this host's",
    help="Guest architecture: " + ", ".join(ARCHES) + " (arm64/amd64 accepted).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vmdesk")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """VM-Desk: create, run and manage virtual machines."""


vm_commands.register(cli)
run_commands.register(cli)
storage_commands.register(cli)
cli.add_command(doctor_command.doctor)
cli.add_command(ui_command.ui)


@cli.group()
def image() -> None:
    """Built-in guest images (the tiny Linux used by the demo, tests and benchmarks)."""


@image.command("build")
@click.argument("name", type=click.Choice(["tiny-linux"]))
@ARCH_OPTION
@click.option("--force", is_flag=True, help="Rebuild even if a cached image matches.")
def image_build(name: str, arch: str, force: bool) -> None:
    """Build (or reuse from the cache) a guest image from Debian packages."""
    from vmdesk.cli.progress import step_reporter
    from vmdesk.images import tiny_linux

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


@image.command("list")
def image_list() -> None:
    """List the built images in the cache."""
    from vmdesk.images import tiny_linux

    found = False
    for arch in ARCHES:
        try:
            built = tiny_linux.find(arch)
        except VMDeskError:
            continue
        found = True
        console.print(
            f"tiny-linux  {arch:8} {built.kernel_release:20} {escape(str(built.directory))}"
        )
    if not found:
        console.print("no images built yet; try `vmdesk image build tiny-linux --arch aarch64`")


@cli.command()
@ARCH_OPTION
@click.option(
    "--refresh", is_flag=True, help="Probe KVM again instead of reusing this boot's result."
)
def accel(arch: str, refresh: bool) -> None:
    """Show which accelerator a guest would run with here, and why."""
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
