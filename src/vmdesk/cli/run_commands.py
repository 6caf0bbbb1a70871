"""Running VMs: start, stop, kill, pause, resume, reboot, status, console, screenshot, display."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
from rich.markup import escape

from vmdesk.cli.fast_start import DEFAULT_READY
from vmdesk.cli.options import JSON_OUTPUT, print_json
from vmdesk.cli.output import console
from vmdesk.core.errors import VMDeskError

DETACH_KEY = b"\x1d"  # Ctrl-]


@click.command()
@click.argument("vm")
@click.option("--wait-ready", is_flag=True, help="Wait for the guest to report it is ready.")
@click.option("--ready-pattern", default=DEFAULT_READY, show_default=True,
              help="Regex on the serial console that means ready.")  # fmt: skip
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for readiness.")
def start(vm: str, wait_ready: bool, ready_pattern: str, timeout: float) -> None:
    """Start a VM; it keeps running after this command returns."""
    from vmdesk.cli import fast_start

    fast_start.run(
        vm, wait_ready=wait_ready, ready_pattern=ready_pattern, timeout=timeout,
        say=lambda text: console.print(escape(text)),
    )  # fmt: skip


@click.command()
@click.argument("vm")
@click.option("--force", is_flag=True, help="Pull the plug instead of pressing the power button.")
@click.option("--timeout", default=30.0, show_default=True,
              help="Seconds the guest gets to power off before it is forced.")  # fmt: skip
def stop(vm: str, force: bool, timeout: float) -> None:
    """Stop a VM: the power button, then a forced stop if the guest does not react."""
    from vmdesk.service import library, lifecycle

    started = time.monotonic()
    reply = lifecycle.stop(library.open(), vm, force=force, timeout=timeout)
    if reply.get("discarded"):
        console.print(f"[green]✓[/] {escape(vm)} was suspended: its saved state is discarded")
        return
    how = "forced off" if reply.get("forced") else "powered off"
    console.print(f"[green]✓[/] {escape(vm)} {how} in {time.monotonic() - started:.1f} s")


@click.command()
@click.argument("vm")
def suspend(vm: str) -> None:
    """Save a running VM's state to its bundle and stop it; `vmdesk start` resumes it."""
    from vmdesk.service import library, lifecycle

    reply = lifecycle.suspend(library.open(), vm)
    console.print(f"[green]✓[/] {escape(vm)} suspended in {reply.get('seconds', 0):.1f} s")


@click.command()
@click.argument("vm")
def kill(vm: str) -> None:
    """Kill a VM's hypervisor process at once (unsaved guest data is lost)."""
    from vmdesk.service import library, lifecycle

    lifecycle.kill(library.open(), vm)
    console.print(f"[green]✓[/] killed {escape(vm)}")


def _simple(op: str, done: str) -> click.Command:
    @click.argument("vm")
    def command(vm: str) -> None:
        from vmdesk.service import library, lifecycle

        reply = lifecycle.simple(library.open(), vm, op)
        console.print(f"[green]✓[/] {escape(vm)} {done} (now {reply.get('status')})")

    command.__doc__ = {"pause": "Pause a running VM (its vCPUs stop).",
                       "resume": "Resume a paused VM.",
                       "reboot": "Reset a running VM (like the reset button)."}[op]  # fmt: skip
    return click.command(op)(command)


pause = _simple("pause", "paused")
resume = _simple("resume", "resumed")
reboot = _simple("reboot", "reset")


@click.command()
@click.argument("vm")
@JSON_OUTPUT
def status(vm: str, as_json: bool) -> None:
    """Show whether a VM runs (derived live, never stored)."""
    from vmdesk.service import library, lifecycle

    info = lifecycle.status(library.open(), vm)
    if as_json:
        print_json(info)
        return
    line = info["status"]
    if info.get("reason"):
        line += f": {info['reason']}"
    console.print(escape(line))


@click.command("console")
@click.argument("vm")
@click.option("--log", "show_log", is_flag=True, help="Print the serial log instead of attaching.")
@click.option("--follow", "-f", is_flag=True, help="With --log: keep printing new output.")
def console_cmd(vm: str, show_log: bool, follow: bool) -> None:
    """Attach this terminal to a VM's serial console (detach with Ctrl-])."""
    from vmdesk.service import library, lifecycle

    if show_log:
        path, more = lifecycle.serial_log(library.open(), vm)
        _print_log(path, more if follow else lambda: False)
        return
    from vmdesk.cli import serial_attach

    if remote_vm := lifecycle.on_host(vm):
        from vmdesk.service import remote_run as remote

        serial_attach.attach(remote.console(library.open(), *remote_vm), vm, DETACH_KEY)
        return
    serial_attach.attach(lifecycle.socket(library.open(), vm), vm, DETACH_KEY)


def _print_log(path: Path, more: Callable[[], bool]) -> None:
    out = sys.stdout.buffer
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise VMDeskError("the VM has no serial log yet", hint="start it first") from None
    with handle:
        while True:
            chunk = handle.read(65536)
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            if not more():
                return
            time.sleep(0.1)


@click.command()
@click.argument("vm")
@click.argument("output", type=click.Path(path_type=Path))
def screenshot(vm: str, output: Path) -> None:
    """Save a PNG of a running VM's screen."""
    from vmdesk.service import library, lifecycle

    path = lifecycle.screenshot(library.open(), vm, output)
    console.print(f"[green]✓[/] saved {escape(str(path))}")


@click.command()
@click.argument("vm")
@click.option(
    "--resolution",
    help="WIDTHxHEIGHT, e.g. 1280x800: a running guest's at once (through its SPICE agent), "
    "a stopped VM's from its next start.",
)
@click.option(
    "--window", is_flag=True, help="Show the running VM's screen in a native macOS window (vz)."
)
def display(vm: str, resolution: str | None, window: bool) -> None:
    """Change a VM's display resolution, or show a vz VM's screen in a native window."""
    if resolution is None and not window:
        raise click.UsageError("give --resolution WIDTHxHEIGHT, --window, or both")
    if resolution is not None:
        _set_resolution(vm, resolution)
    if window:
        _open_window(vm)


def _set_resolution(vm: str, resolution: str) -> None:
    from vmdesk.service import display as vm_display
    from vmdesk.service import library

    width, height, when = vm_display.set_resolution(library.open(), vm, resolution)
    said = {
        "live": "now",
        "asked": "once its SPICE agent answers",
        "next start": "from its next start",
    }
    console.print(f"[green]✓[/] {escape(vm)} display set to {width}x{height} ({said[when]})")


def _open_window(vm: str) -> None:
    """Ask the supervisor, which owns the VM, to open the window (see vz/window.py)."""
    from vmdesk.service import display as vm_display
    from vmdesk.service import library

    reply = vm_display.open_window(library.open(), vm)
    if reply.get("window") == "opened":
        console.print(
            f"[green]✓[/] {escape(vm)}'s screen is open in a window on this Mac "
            "(closing the window leaves the VM running)"
        )
    else:
        console.print(f"[green]✓[/] {escape(vm)}'s window was already open: brought to the front")


def register(group: click.Group) -> None:
    for command in (
        start,
        stop,
        suspend,
        kill,
        pause,
        resume,
        reboot,
        status,
        console_cmd,
        screenshot,
        display,
    ):
        group.add_command(command)
