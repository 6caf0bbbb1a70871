"""Running VMs: start, stop, kill, pause, resume, reboot, status, console, screenshot, display."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from vmdesk.cli.fast_start import DEFAULT_READY
from vmdesk.cli.options import JSON_OUTPUT, print_json
from vmdesk.cli.output import console
from vmdesk.core.errors import VMDeskError
from vmdesk.core.states import ENDED

DETACH_KEY = b"\x1d"  # Ctrl-]


def _bundle(vm: str) -> Any:
    from vmdesk.cli.fast_start import find_bundle

    return find_bundle(vm)


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
    from vmdesk.supervisor import status as vmstatus

    info = vmstatus.derive(_bundle(vm).path)
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
    bundle = _bundle(vm)
    if show_log:
        _print_log(bundle, follow)
        return
    from vmdesk.supervisor import status as vmstatus

    if vmstatus.derive(bundle.path)["status"] in ENDED:
        raise VMDeskError(f"VM {vm!r} is not running", hint=f"`vmdesk start {vm}`, or --log")
    from vmdesk.cli import serial_attach

    serial_attach.attach(vmstatus.sockets_for(bundle.path).console, vm, DETACH_KEY)


def _print_log(bundle: Any, follow: bool) -> None:
    from vmdesk.supervisor import status as vmstatus

    path: Path = bundle.files.serial_log
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
            if not follow or vmstatus.derive(bundle.path)["status"] in ENDED:
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
@click.option("--resolution", help="WIDTHxHEIGHT, e.g. 1280x800 (applies from the next start).")
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
    from vmdesk.core import specs
    from vmdesk.core.library import Library

    library = Library()
    bundle = library.find(vm)
    config = bundle.load()
    width, height = specs.resolution(resolution)
    config.display.width, config.display.height = width, height
    library.update(bundle, config)
    console.print(f"[green]✓[/] {escape(vm)} display set to {width}x{height} (from its next start)")


def _open_window(vm: str) -> None:
    """Ask the supervisor, which owns the VM, to open the window (see vz/window.py)."""
    from vmdesk.core.errors import EngineError
    from vmdesk.core.states import AT_REST
    from vmdesk.engines import registry
    from vmdesk.service import library as service_library
    from vmdesk.supervisor import client
    from vmdesk.supervisor import status as vmstatus

    bundle = service_library.find(service_library.open(), vm)
    state = vmstatus.derive(bundle.path)["status"]
    if state in AT_REST:
        screen = registry.describe(bundle.load())["display"]
        if screen["kind"] != "window":  # the running supervisor answers this itself
            raise EngineError(
                f"VM {vm!r} runs on QEMU, which shows its screen over VNC, not in a native window",
                hint=f"start it (`vmdesk start {vm}`), then open its console in the web app "
                f"(`vmdesk ui`, then {vm} → Console) or point a VNC viewer at its socket "
                f"(`vmdesk show {vm}` names it)",
            )
        start = "resume it" if state == "suspended" else "start it"
        raise client.NotRunning(
            f"VM {vm!r} is {state}: its window shows a running VM",
            hint=f"{start} first: `vmdesk start {vm}`, then `vmdesk display {vm} --window`",
        )
    reply = client.window(bundle)
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
