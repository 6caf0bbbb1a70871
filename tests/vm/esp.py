"""Booting the tiny guest from UEFI firmware, as a real disk boot: an EFI system partition
holding the kernel (its EFI stub makes it a UEFI application), its initrd and a startup.nsh
that the firmware's UEFI shell runs, since nothing else gives the kernel its command line."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from tests.vm.conftest import CLI
from vmdesk.engines.qemu.process import SerialConsole
from vmdesk.images.tiny_linux import READY_PATTERN, TinyImage

MIB = 1 << 20
SHELL_TIMEOUT = 180.0  # start to the UEFI shell's countdown (TCG, a noisy CI machine)
BOOT_TIMEOUT = 240.0  # from there to the guest's shell prompt
PROMPT = "vmdesk-tiny# "


def _mtools(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: install mtools (scripts/setup.sh does)"
    return found


def make_esp(image: TinyImage, dest: Path, *, cmdline: str | None = None) -> Path:
    """A FAT32 image (no partition table: the firmware reads a whole-disk file system too)
    with \\vmlinuz, \\initrd.img and \\startup.nsh booting them."""
    kernel, initrd = image.efi_kernel, image.initrd
    used = kernel.stat().st_size + initrd.stat().st_size
    size = max(64 * MIB, (used // MIB + 32) * MIB)  # FAT32 wants 64 MiB or so at least
    with dest.open("wb") as out:
        out.truncate(size)
    subprocess.run([_mtools("mformat"), "-i", str(dest), "-F", "-v", "VMDESK-ESP", "::"],
                   check=True, capture_output=True)  # fmt: skip
    script = dest.with_name(dest.name + ".startup.nsh")
    line = f"\\vmlinuz initrd=\\initrd.img {cmdline or image.cmdline()}"
    script.write_bytes(line.encode() + b"\r\n")
    for source, name in ((kernel, "vmlinuz"), (initrd, "initrd.img"), (script, "startup.nsh")):
        subprocess.run([_mtools("mcopy"), "-i", str(dest), str(source), f"::/{name}"],
                       check=True, capture_output=True)  # fmt: skip
    script.unlink()
    return dest


SHELL_ASKS = "any other key to continue"
NOTHING_BOOTED = "No bootable option or device was found"


def _to_the_shell(cli: CLI, name: str, console: SerialConsole) -> None:
    """Until the UEFI shell's countdown. Seen once in many runs on a loaded host under TCG:
    the firmware's built-in shell returned as soon as it was started, and the firmware then
    waited for a key with nothing left to boot. That is this scaffolding's boot path (the
    firmware's shell), not a guest's own loader: reset the VM, as a person would, once."""
    found = console.wait_for(f"{SHELL_ASKS}|{NOTHING_BOOTED}", SHELL_TIMEOUT)
    if found.group(0) == NOTHING_BOOTED:
        cli("reboot", name)
        console.wait_for(SHELL_ASKS, SHELL_TIMEOUT, start=found.end())


def start_to_prompt(cli: CLI, *names: str) -> list[SerialConsole]:
    """Start the VMs (together: they boot in parallel) and return their consoles once each
    guest's shell is at its prompt.

    The UEFI shell counts down 5 s before running startup.nsh unless a key other than ESC
    is pressed: press Enter as soon as it asks (the console replays what the guest printed
    before we attached, so the question is not missed).
    """
    consoles: list[SerialConsole] = []
    try:
        for name in names:
            cli("start", name)
            consoles.append(cli.console(name))
        for name, console in zip(names, consoles, strict=True):
            _to_the_shell(cli, name, console)
            console.send("")
        for console in consoles:
            ready = console.wait_for(READY_PATTERN, BOOT_TIMEOUT)
            console.wait_for(PROMPT, 60, start=ready.end())
    except BaseException:
        for console in consoles:
            console.close()
        raise
    time.sleep(1)  # busybox ash drops what is typed while it is still starting
    return consoles
