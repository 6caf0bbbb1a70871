"""``vmdesk demo``: create a tiny Linux VM, start it, show its console, stop it, all through
the service, as every other command does."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape

from vmdesk.cli.progress import step_reporter
from vmdesk.core.arch import Arch
from vmdesk.core.errors import NotFound
from vmdesk.core.library import Library
from vmdesk.core.states import AT_REST
from vmdesk.engines.qemu import accel as qemu_accel
from vmdesk.engines.qemu.process import SerialConsole
from vmdesk.images import tiny_linux
from vmdesk.service import library as service_library
from vmdesk.service import lifecycle, vms

NAME = "demo"
BOOT_TIMEOUT = 120.0  # generous: emulation on a busy laptop can be slow
DEMO_COMMANDS = ("uname -a", "ip -4 -o addr show dev eth0", "head -n 3 /proc/cpuinfo")


def _fresh_vm(library: Library, arch: Arch, progress: Callable[[str], None]) -> None:
    """(Re)create the demo VM so every run starts from the same state."""
    try:
        if lifecycle.status(library, NAME)["status"] not in AT_REST:
            lifecycle.stop(library, NAME, force=True)
        vms.delete(library, NAME)
    except NotFound:
        pass
    vms.create(
        library,
        {"name": NAME, "arch": arch, "cpus": 1, "memory": "256MiB",
         "display": {"device": "none", "vnc": False}},
        image="tiny-linux",
        progress=progress,
    )  # fmt: skip


def run(console: Console, arch: Arch, accel_name: str | None) -> None:
    console.print(f"[bold]VM-Desk demo[/]: a tiny Linux VM for {arch}")
    with step_reporter(console, f"tiny-linux image for {arch}") as report:
        image = tiny_linux.build(arch, progress=report)
    console.print(
        f"[green]✓[/] image: kernel {image.kernel_release} ({escape(str(image.directory))})"
    )

    if accel_name is not None:
        import os

        os.environ[qemu_accel.ENV_OVERRIDE] = accel_name  # the supervisor reads it too
    with console.status("choosing the accelerator (a bounded KVM probe if it applies)"):
        choice = qemu_accel.choose(arch)
    console.print(f"[green]✓[/] accelerator: [bold]{choice.accel}[/] — {escape(choice.reason)}")

    library = service_library.open()
    with step_reporter(console, f"VM {NAME}") as report:
        _fresh_vm(library, arch, report)
    path = library.path_for(NAME)
    console.print(f"[green]✓[/] created VM [bold]{NAME}[/] ({escape(str(path))})")
    started = time.monotonic()
    report_ = lifecycle.start(library, NAME)
    console.print(f"[green]✓[/] started (supervisor pid {report_.get('pid')}); serial console:")

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(lifecycle.socket(library, NAME)))
    streaming = True

    def show(line: str) -> None:
        if streaming and line.strip():
            console.print(f"  [dim]│[/] {escape(line)}")

    serial = SerialConsole(sock, show)
    try:
        ready = serial.wait_for(tiny_linux.READY_PATTERN, BOOT_TIMEOUT)
        streaming = False
        facts = tiny_linux.parse_ready(ready.group(1))
        console.print(
            f"[green]✓[/] guest ready {time.monotonic() - started:.1f} s after `start` "
            f"(kernel uptime {facts.get('uptime', '?')} s, network {facts.get('net', 'none')})"
        )
        console.print("commands typed on the guest's serial console:")
        for command in DEMO_COMMANDS:
            output = serial.run(command, timeout=30)
            console.print(f"  [bold cyan]vmdesk-tiny#[/] {escape(command)}")
            for line in output.splitlines():
                console.print(f"    {escape(line)}")
    finally:
        serial.close()
    console.print("stopping: pressing the power button...")
    stopping = time.monotonic()
    reply = lifecycle.stop(library, NAME, timeout=60)
    how = "was forced off" if reply.get("forced") else "powered itself off"
    console.print(f"[green]✓[/] the guest {how} in {time.monotonic() - stopping:.2f} s")

    other = "x86_64" if arch == "aarch64" else "aarch64"
    console.print("\n[bold]Next[/] (after `source .venv/bin/activate`):")
    for line in (
        f"vmdesk start {NAME} && vmdesk console {NAME}   attach to its console (Ctrl-] detaches)",
        f"vmdesk stop {NAME}                            press its power button",
        f"make demo ARCH={other}                          the same with an {other} guest",
        "vmdesk create dev --image tiny-linux --forward tcp:8080:80   a VM of your own",
        "vmdesk doctor                                what this host can do, and fixes",
        "make test                                    build both guests and run every test",
    ):
        console.print(f"  {escape(line)}")
