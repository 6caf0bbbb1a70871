"""`vmdesk move`: a stopped VM from the desk to a libvirt host, on to a second daemon, and
back, its disk's data (written on the desk and in the guest on a host) checked at the end;
and every move that must not happen refused with nothing changed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.libvirt_daemon import SessionDaemon
from tests.vm.conftest import CLI

pytestmark = pytest.mark.vm
PATTERN_AT, HOST_TEXT_AT = 0, 2 << 20
HOST_TEXT = b"written-on-host-lab"


def _volumes(virsh: list[str]) -> list[str]:
    done = subprocess.run([*virsh, "vol-list", "vmdesk"], capture_output=True, text=True,
                          check=False)  # fmt: skip
    return [line.split()[0] for line in done.stdout.splitlines()[2:] if line.strip()]


SYSTEM = ["virsh", "-c", "qemu:///system"]


def _qemu_io(disk: Path, command: str) -> str:
    done = subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, str(disk)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return done.stdout


def _type_in_console(cli: CLI, ref: str, line: str, expect: bytes) -> None:
    attached = subprocess.Popen(
        [sys.executable, "-m", "vmdesk.cli.main", "console", ref], env=cli.env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert attached.stdin is not None and attached.stdout is not None
    attached.stdin.write(f"\n{line}\n".encode())
    attached.stdin.flush()
    seen, deadline = b"", time.monotonic() + 60
    while expect not in seen and time.monotonic() < deadline:
        seen += os.read(attached.stdout.fileno(), 65536)
    attached.stdin.write(b"\x1d")  # Ctrl-]: detach
    attached.stdin.close()
    assert attached.wait(30) == 0
    assert expect in seen, seen


def test_a_vm_moves_to_a_host_on_to_another_and_back_with_its_data(
    lab: CLI, lab2: SessionDaemon, vm_name: str, tmp_path: Path
) -> None:
    lab("create", vm_name, "--image", "tiny-linux", "--arch", "x86_64", "--disk-size", "16MiB",
        timeout=300)  # fmt: skip
    disk = lab.bundle(vm_name) / "disks" / "disk0.qcow2"
    _qemu_io(disk, f"write -P 0xab {PATTERN_AT} 1M")

    out = lab("move", vm_name, "--to", "lab", timeout=300)
    assert f"moved {vm_name} to lab:{vm_name}" in out, out
    assert not lab.bundle(vm_name).exists(), "the desk's copy goes once the host's is verified"
    assert len([v for v in _volumes(SYSTEM) if v.startswith(f"{vm_name}-")]) == 3

    ref = f"lab:{vm_name}"  # it boots there, and its guest writes to the disk
    lab("start", ref, "--wait-ready", "--timeout", "180", timeout=240)
    command = (f"printf {HOST_TEXT.decode()} | dd of=/dev/vda bs=1 seek={HOST_TEXT_AT} "
               "conv=notrunc 2>/dev/null; sync; echo synced-$((40+2))")  # fmt: skip
    _type_in_console(lab, ref, command, b"synced-42")
    lab("stop", ref, "--timeout", "60", timeout=90)

    lab("host", "add", "lab2", lab2.uri)
    out = lab("move", ref, "--to", "lab2", timeout=300)
    assert f"moved {ref} to lab2:{vm_name}" in out, out
    assert not [v for v in _volumes(SYSTEM) if v.startswith(f"{vm_name}-")]
    rows = [line.split()[:3] for line in lab("list").splitlines()]
    assert ["lab2", vm_name, "stopped"] in rows and ["lab", vm_name, "stopped"] not in rows
    out = lab("start", f"lab2:{vm_name}", "--wait-ready", "--timeout", "180", timeout=240)
    assert "VMDESK-READY" in out, out
    lab("stop", f"lab2:{vm_name}", "--force")

    out = lab("move", f"lab2:{vm_name}", "--to", "local", timeout=300)
    assert f"moved lab2:{vm_name} to {vm_name}" in out, out
    assert vm_name not in lab2.virsh("list", "--all", "--name").stdout.split()
    assert not [v for v in _volumes(["virsh", "-c", lab2.uri]) if v.startswith(f"{vm_name}-")]
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(disk), str(raw)], check=True)
    data = raw.read_bytes()
    assert data[PATTERN_AT : PATTERN_AT + (1 << 20)] == b"\xab" * (1 << 20)
    assert data[HOST_TEXT_AT : HOST_TEXT_AT + len(HOST_TEXT)] == HOST_TEXT
    out = lab("start", vm_name, "--wait-ready", "--timeout", "180", timeout=240)
    assert "ready" in out, out  # the description came back whole: it runs on the desk
    lab("stop", vm_name, "--force")


def _digests(bundle: Path) -> dict[str, str]:
    """The VM's own files: its description, disks and boot files (not the desk's caches)."""
    files = [bundle / "config.json", *sorted((bundle / "disks").iterdir()),
             *sorted((bundle / "boot").iterdir())]  # fmt: skip
    return {str(p.relative_to(bundle)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_moves_that_must_not_happen_are_refused_and_change_nothing(lab: CLI, vm_name: str) -> None:
    lab("create", vm_name, "--image", "tiny-linux", "--arch", "x86_64", "--disk-size", "16MiB",
        timeout=300)  # fmt: skip
    bundle = lab.bundle(vm_name)

    for args, says in (
        (("--to", "nowhere"), "no host named 'nowhere'"),
        (("--to", "local"), "is on this desk already"),
    ):
        out = lab("move", vm_name, *args, ok=False)
        assert says in out and "hint:" in out, out

    lab("snapshot", "create", vm_name, "first")
    out = lab("move", vm_name, "--to", "lab", ok=False)
    assert "1 snapshot(s)" in out and "hint:" in out, out
    lab("snapshot", "delete", vm_name, "first")

    lab("start", vm_name)
    out = lab("move", vm_name, "--to", "lab", ok=False)
    assert "only a stopped VM moves" in out and f"vmdesk stop {vm_name}" in out, out
    assert lab.status(vm_name)["status"] == "running"
    lab("stop", vm_name, "--force")
    assert not [v for v in _volumes(SYSTEM) if v.startswith(f"{vm_name}-")], "nothing sent"

    # on a host, and a VM of the same name made on the desk meanwhile: it can't come back
    before = _digests(bundle)
    lab("move", vm_name, "--to", "lab", timeout=300)
    lab("create", vm_name, "--image", "tiny-linux", "--arch", "x86_64", timeout=300)
    out = lab("move", f"lab:{vm_name}", "--to", "local", ok=False)
    assert "already" in out and "vmdesk rename" in out, out
    out = lab("move", f"lab:{vm_name}", "--to", "lab", ok=False)
    assert "is on host lab already" in out, out
    assert lab.status(f"lab:{vm_name}")["status"] == "stopped"
    assert len([v for v in _volumes(SYSTEM) if v.startswith(f"{vm_name}-")]) == 3
    lab("delete", vm_name, "--yes")
    lab("move", f"lab:{vm_name}", "--to", "local", timeout=300)
    assert _digests(bundle) == before  # every file back as it was, the description too

    lab("move", vm_name, "--to", "lab", timeout=300)  # running on the host: it stays there
    lab("start", f"lab:{vm_name}")
    out = lab("move", f"lab:{vm_name}", "--to", "local", ok=False)
    assert "only a stopped VM moves" in out and f"vmdesk stop lab:{vm_name}" in out, out
    assert lab.status(f"lab:{vm_name}")["status"] == "running"
    assert not bundle.exists()
    lab("stop", f"lab:{vm_name}", "--force")


def test_a_running_vm_moves_live_between_two_hosts_and_back(
    lab: CLI, lab2: SessionDaemon, vm_name: str
) -> None:
    lab("create", vm_name, "--host", "lab", "--image", "tiny-linux", "--arch", "x86_64",
        "--disk-size", "16MiB", timeout=300)  # fmt: skip
    lab("host", "add", "lab2", lab2.uri)
    ref = f"lab:{vm_name}"
    lab("start", ref, "--wait-ready", "--timeout", "180", timeout=240)
    # in its RAM (a tmpfs) and on its disk, before it moves
    _type_in_console(lab, ref, f"echo in-ram-$((40+2)) > /tmp/marker; printf {HOST_TEXT.decode()} "
                     f"| dd of=/dev/vda bs=1 seek={HOST_TEXT_AT} conv=notrunc 2>/dev/null; "
                     "sync; echo written-$((40+2))", b"written-42")  # fmt: skip

    out = lab("move", ref, "--to", "lab2", timeout=300)
    assert f"moved {ref} to lab2:{vm_name}" in out, out
    there = f"lab2:{vm_name}"
    assert lab.status(there)["status"] == "running"
    assert not [v for v in _volumes(SYSTEM) if v.startswith(f"{vm_name}-")]
    assert vm_name not in subprocess.run([*SYSTEM, "list", "--all", "--name"],
                                         capture_output=True, text=True).stdout.split()  # fmt: skip
    # the same boot goes on: what it held in RAM is there, and its disk came along
    read_back = (
        f"dd if=/dev/vda bs=1 skip={HOST_TEXT_AT} count={len(HOST_TEXT)} "
        "2>/dev/null | tr a-z A-Z; echo"
    )  # upper case: not the typed line's echo
    _type_in_console(lab, there, read_back, HOST_TEXT.upper())
    _type_in_console(lab, there, "cat /tmp/marker", b"in-ram-42")

    out = lab("move", there, "--to", "lab", timeout=300)
    assert f"moved {there} to {ref}" in out, out
    assert lab.status(ref)["status"] == "running"
    assert not [v for v in _volumes(["virsh", "-c", lab2.uri]) if v.startswith(f"{vm_name}-")]
    _type_in_console(lab, ref, "cat /tmp/marker", b"in-ram-42")
    lab("stop", ref, "--force")
