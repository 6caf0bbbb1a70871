"""``vmdesk demo``: build the tiny guest, boot it, show its console, press the power button."""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape

from vmdesk.cli.progress import step_reporter
from vmdesk.core.arch import Arch
from vmdesk.core.errors import GuestTimeout
from vmdesk.engines.qemu import accel as qemu_accel
from vmdesk.engines.qemu.argv import BootSpec
from vmdesk.engines.qemu.process import QemuProcess
from vmdesk.images import tiny_linux

BOOT_TIMEOUT = 120.0  # generous: emulation on a busy laptop can be slow
DEMO_COMMANDS = ("uname -a", "ip -4 -o addr show dev eth0", "cat /proc/cpuinfo | head -n 3")


def run(console: Console, arch: Arch, accel_name: str | None) -> None:
    console.print(f"[bold]VM-Desk demo[/]: a tiny Linux guest for {arch}")
    with step_reporter(console, f"tiny-linux image for {arch}") as report:
        image = tiny_linux.build(arch, progress=report)
    console.print(
        f"[green]✓[/] image: kernel {image.kernel_release} ({escape(str(image.directory))})"
    )

    with console.status("choosing the accelerator (a bounded KVM probe if it applies)"):
        choice = qemu_accel.choose(arch, accel_name)
    console.print(f"[green]✓[/] accelerator: [bold]{choice.accel}[/] — {escape(choice.reason)}")

    spec = BootSpec(
        arch=arch, accel=choice.accel, kernel=image.kernel, initrd=image.initrd,
        cmdline=image.cmdline(), memory_mib=256, nic=True,
    )  # fmt: skip
    streaming = True

    def show(line: str) -> None:
        if streaming and line.strip():
            console.print(f"  [dim]│[/] {escape(line)}")

    console.print("booting; serial console:")
    with QemuProcess(spec, on_serial_line=show) as vm:
        try:
            ready = vm.wait_serial(tiny_linux.READY_PATTERN, BOOT_TIMEOUT)
        except GuestTimeout as exc:
            exc.hint = f"the console so far is in {vm.serial_log}; try --accel tcg"
            raise
        streaming = False
        facts = tiny_linux.parse_ready(ready.group(1))
        console.print(
            f"[green]✓[/] guest ready in {time.monotonic() - vm.started_at:.1f} s "
            f"(kernel uptime {facts.get('uptime', '?')} s, network {facts.get('net', 'none')})"
        )
        console.print("commands typed on the guest's serial shell:")
        for command in DEMO_COMMANDS:
            output = vm.serial.run(command, timeout=30)
            console.print(f"  [bold cyan]vmdesk-tiny#[/] {escape(command)}")
            for line in output.splitlines():
                console.print(f"    {escape(line)}")
        console.print("pressing the power button (system_powerdown)...")
        seconds = vm.powerdown(timeout=60)
        console.print(f"[green]✓[/] the guest powered itself off in {seconds:.2f} s")

    other = "x86_64" if arch == "aarch64" else "aarch64"
    console.print("\n[bold]Next[/]:")
    console.print(f"  make demo ARCH={other}               the same with an {other} guest")
    console.print("  make test                          build both guests and run every test")
    console.print(
        "  .venv/bin/vmdesk accel --arch x86_64  which accelerator this host gets, and why"
    )
    console.print("  .venv/bin/vmdesk --help            everything else")
