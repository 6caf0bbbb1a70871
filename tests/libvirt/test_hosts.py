"""VMs on libvirt hosts, driven with the same verbs as local ones: this machine's libvirtd
as host `lab`, and the same daemon over SSH as a second host."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.libvirt.conftest import hosts_file
from tests.libvirt_daemon import Sshd
from tests.vm.conftest import CLI

pytestmark = pytest.mark.vm
READY = r"^VMDESK-READY"


def _volumes() -> list[str]:
    done = subprocess.run(["virsh", "-c", "qemu:///system", "vol-list", "vmdesk"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return [line.split()[0] for line in done.stdout.splitlines()[2:] if line.strip()]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_a_vm_on_a_libvirt_host_is_made_booted_and_removed_like_a_local_one(
    lab: CLI, vm_name: str, tmp_path: Path
) -> None:
    out = lab("host", "list")
    assert "lab  qemu:///system  libvirt 9." in out, out
    out = lab("create", vm_name, "--host", "lab", "--image", "tiny-linux", "--arch", "x86_64",
              timeout=300)  # fmt: skip
    assert f"created VM lab:{vm_name}" in out, out
    assert not list(lab.home.glob("*.vmdesk")), "nothing of it stays on the desk"
    assert not list(lab.home.glob(".remote-*")), "nor its staging library"
    ours = [v for v in _volumes() if v.startswith(f"{vm_name}-")]
    assert len(ours) == 2, ours  # its kernel and initrd, in the host's pool

    table = lab("list")
    assert table.splitlines()[0].split()[:3] == ["HOST", "NAME", "STATUS"], table
    assert any(line.split()[:3] == ["lab", vm_name, "stopped"] for line in table.splitlines())
    rows = json.loads(lab("list", "--json"))
    assert [r["engine"] for r in rows if r["name"] == vm_name] == ["libvirt"]

    ref = f"lab:{vm_name}"
    out = lab("start", ref, "--wait-ready", "--timeout", "180", timeout=240)
    assert "✓ ready after" in out and "VMDESK-READY" in out, out
    assert lab.status(ref)["status"] == "running"
    shot = tmp_path / "screen.png"
    lab("screenshot", ref, str(shot))
    assert _png_size(shot) >= (320, 200)
    lab("pause", ref)
    assert lab.status(ref)["status"] == "paused"
    lab("resume", ref)
    out = lab("stop", ref, "--timeout", "60", timeout=90)
    assert "powered off" in out, out  # the guest took the power button
    assert lab.status(ref)["status"] == "stopped"

    lab("delete", ref, "--yes")
    assert not [v for v in _volumes() if v.startswith(f"{vm_name}-")]
    assert vm_name not in lab("list")


def test_stop_forces_and_kill_ends_a_vm_on_a_host(lab: CLI, vm_name: str) -> None:
    lab("create", vm_name, "--host", "lab", "--image", "tiny-linux", "--arch", "x86_64",
        timeout=300)  # fmt: skip
    before = _volumes()
    out = lab("create", vm_name, "--host", "lab", "--image", "tiny-linux", "--arch", "x86_64",
              ok=False, timeout=300)  # fmt: skip
    assert f"host lab already has a VM named '{vm_name}'" in out, out
    assert _volumes() == before  # refused before anything was uploaded
    ref = f"lab:{vm_name}"
    lab("start", ref, "--wait-ready", "--timeout", "180", timeout=240)
    # the console both ways: a command typed in, its output back, then Ctrl-] to detach
    attached = subprocess.Popen(
        [sys.executable, "-m", "vmdesk.cli.main", "console", ref], env=lab.env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert attached.stdin is not None and attached.stdout is not None
    attached.stdin.write(b"\necho from-the-$((6*7))-host\n")
    attached.stdin.flush()
    seen, deadline = b"", time.monotonic() + 60
    while b"from-the-42-host" not in seen and time.monotonic() < deadline:
        seen += os.read(attached.stdout.fileno(), 65536)
    attached.stdin.write(b"\x1d")  # Ctrl-]: detach
    attached.stdin.close()
    assert attached.wait(30) == 0
    assert b"from-the-42-host" in seen, seen
    out = lab("stop", ref, "--force")
    assert "forced off" in out, out
    lab("start", ref)
    lab("kill", ref)
    assert lab.status(ref)["status"] == "stopped"
    out = lab("delete", ref, ok=False)  # no terminal to confirm on
    assert "--yes" in out, out


def test_wrong_unreachable_and_unknown_hosts_are_one_line_errors_that_change_nothing(
    lab: CLI, vm_name: str, tmp_path: Path
) -> None:
    before = hosts_file(lab)
    # an sshd of its own: no SSH connection shared with the other tests' can let us in
    refusing = Sshd(tmp_path / "refusing")
    wrong_key = tmp_path / "not-authorized"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong_key)],
                   check=True)  # fmt: skip
    refused = refusing.uri.replace(str(refusing.key), str(wrong_key))
    try:
        _each_a_line_and_a_hint(lab, vm_name, refused)
    finally:
        refusing.close()
    assert hosts_file(lab) == before
    assert not list(lab.home.glob("*.vmdesk")) and not list(lab.home.glob(".remote-*"))


def _each_a_line_and_a_hint(lab: CLI, vm_name: str, refused: str) -> None:
    cases = {
        ("host", "add", "nokey", refused): "host nokey: the host refused the SSH login",
        ("host", "add", "web", "http://lab/system"): "drives libvirt's QEMU driver only",
        ("host", "add", "pw", "qemu+ssh://me:secret@lab/system"): "stores no credentials",
        ("host", "add", "none", "qemu+ssh://root@127.0.0.1:1/system?no_verify=1"): "host none",
        ("host", "add", "lab", "qemu:///system"): "a host named 'lab' exists",
        ("host", "add", "local", "qemu:///system"): "can't name a host",
        ("create", vm_name, "--host", "nope", "--image", "tiny-linux"): "no host named 'nope'",
        ("start", f"nope:{vm_name}"): "no host named 'nope'",
        ("start", f"lab:{vm_name}"): f"no VM named '{vm_name}' on host lab",
    }
    for args, needle in cases.items():
        out = lab(*args, ok=False, timeout=60)
        lines = [line for line in out.strip().splitlines() if line.strip()]
        assert needle in lines[0], (args, out)
        assert len(lines) == 2 and lines[1].startswith("hint: "), (args, out)
        assert "Traceback" not in out


def test_a_second_host_over_ssh_lists_its_vms_beside_the_firsts(
    lab: CLI, sshd: Sshd, vm_name: str
) -> None:
    out = lab("host", "add", "far", sshd.uri, timeout=60)
    assert "added host far" in out, out
    lab("create", vm_name, "--host", "far", "--image", "tiny-linux", "--arch", "x86_64",
        timeout=300)  # fmt: skip
    hosts = lab("host", "list")
    assert "lab  qemu:///system  libvirt" in hosts and "far  qemu+ssh://" in hosts, hosts
    # one daemon behind both names: each host lists the VM, under its own name
    listed = {tuple(line.split()[:2]) for line in lab("list").splitlines()}
    assert {("lab", vm_name), ("far", vm_name)} <= listed, listed
    ref = f"far:{vm_name}"
    out = lab("start", ref, "--wait-ready", "--timeout", "180", timeout=240)
    assert "VMDESK-READY" in out, out  # the console stream, over SSH
    lab("stop", ref, "--force")
    lab("host", "rm", "far")
    assert "far" not in lab("host", "list")
    assert lab.status(f"lab:{vm_name}")["status"] == "stopped"  # its VMs stay on the host


def test_snapshots_of_a_running_vm_on_a_host_are_libvirts_own_with_its_ram(
    lab: CLI, vm_name: str
) -> None:
    lab("create", vm_name, "--host", "lab", "--image", "tiny-linux", "--arch", "x86_64",
        "--disk-size", "64MiB", timeout=300)  # fmt: skip
    ref = f"lab:{vm_name}"
    lab("start", ref, "--wait-ready", "--timeout", "180", timeout=240)
    out = lab("snapshot", "create", ref, "before", timeout=120)
    assert "snapshot with RAM before" in out, out
    tree = json.loads(lab("snapshot", "list", ref, "--json"))
    assert [(s["name"], s["ram"]) for s in tree["snapshots"]] == [("before", True)]
    assert tree["current"] == "before"
    out = lab("snapshot", "create", ref, "--disk-only", ok=False)
    assert "disk-only snapshots" in out and "hint:" in out, out
    lab("snapshot", "revert", ref, "before", timeout=120)
    assert lab.status(ref)["status"] == "running"  # it runs on from the snapshot's moment
    out = lab("snapshot", "revert", ref, "nope", ok=False)
    assert "no snapshot 'nope'" in out, out
    lab("snapshot", "delete", ref, "before", timeout=120)
    assert "has no snapshots" in lab("snapshot", "list", ref)
    lab("stop", ref, "--force")
    lab("delete", ref, "--yes")
    assert not [v for v in _volumes() if v.startswith(f"{vm_name}-")]
