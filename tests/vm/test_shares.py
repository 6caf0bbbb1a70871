"""Shared folders: VirtioFS through a virtiofsd per share, and virtio-9p, in real guests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.vm.conftest import CLI
from vmdesk.core.arch import ARCHES, Arch

pytestmark = pytest.mark.vm

MOUNT = {
    "virtiofs": "mount -t virtiofs {tag} {point}",
    "9p": "mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 {tag} {point}",
}


def _virtiofsd_sources(under: Path) -> set[str]:
    """The source directories under ``under`` that a running virtiofsd serves (it forks
    into a sandbox, so a share has two processes)."""
    found: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"virtiofsd"):
            sources = [a.decode().removeprefix("source=") for a in argv if a.startswith(b"source=")]
            found.update(s for s in sources if Path(s).is_relative_to(under))
    return found


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    rw, ro = tmp_path / "work", tmp_path / "docs"
    rw.mkdir()
    ro.mkdir()
    (rw / "from-host.txt").write_text("written by the host\n")
    (ro / "readme.txt").write_text("read only\n")
    return rw, ro


def _exercise(cli: CLI, mode: str, rw: Path, ro: Path) -> None:
    """Mount both shares in the guest by tag and use them both ways."""
    console = cli.console("vm")
    try:
        for tag in ("work", "docs"):
            console.run(
                f"mkdir -p /mnt/{tag} && " + MOUNT[mode].format(tag=tag, point=f"/mnt/{tag}")
            )
        assert console.run("cat /mnt/work/from-host.txt") == "written by the host"
        console.run("echo written by the guest > /mnt/work/from-guest.txt && sync")
        assert console.run("cat /mnt/docs/readme.txt") == "read only"
        refused = console.run("echo x > /mnt/docs/new.txt; rm /mnt/docs/readme.txt; echo rc=$?")
        assert "Read-only file system" in refused and refused.endswith("rc=1")
        assert console.run("grep -c ' /mnt/' /proc/mounts") == "2"
    finally:
        console.close()
    assert (rw / "from-guest.txt").read_text() == "written by the guest\n"
    assert sorted(p.name for p in ro.iterdir()) == ["readme.txt"]  # untouched


@pytest.mark.parametrize("arch", ARCHES)
def test_virtiofs_shares_work_both_ways_and_read_only_is_enforced(
    cli: CLI, arch: Arch, tmp_path: Path
) -> None:
    rw, ro = _folders(tmp_path)
    cli("create", "vm", "--image", "tiny-linux", "--arch", arch, "--nic", "none",
        "--share", f"{rw}:work", "--share", f"{ro}:docs:ro")  # fmt: skip
    cli("start", "vm", "--wait-ready")
    assert _virtiofsd_sources(tmp_path) == {str(rw), str(ro)}  # a daemon per share
    engine_log = (cli.bundle("vm") / "logs/engine.log").read_text()
    assert "vhost-user-fs-pci" in engine_log and "memory-backend-memfd" in engine_log
    _exercise(cli, "virtiofs", rw, ro)
    cli("stop", "vm", "--timeout", "30")
    assert _virtiofsd_sources(tmp_path) == set()  # the daemons went with QEMU


def test_9p_shares_work_both_ways_and_read_only_is_enforced(cli: CLI, tmp_path: Path) -> None:
    rw, ro = _folders(tmp_path)
    cli("create", "vm", "--image", "tiny-linux", "--arch", "aarch64", "--nic", "none",
        "--share", f"{rw}:work:9p", "--share", f"{ro}:docs:ro:9p")  # fmt: skip
    cli("start", "vm", "--wait-ready")
    assert _virtiofsd_sources(tmp_path) == set()
    _exercise(cli, "9p", rw, ro)
    # QEMU cannot save a mounted 9p share: the refusal says what to do, the guest runs on
    refused = cli("suspend", "vm", ok=False)
    assert "unmount the 9p shared folder" in refused
    assert cli.status("vm")["status"] == "running"
    console = cli.console("vm")
    try:
        assert console.run("cat /mnt/work/from-guest.txt") == "written by the guest"
    finally:
        console.close()
    cli("stop", "vm", "--force")


def test_saving_memory_with_a_virtiofs_share_offers_the_alternatives(
    cli: CLI, tmp_path: Path
) -> None:
    """QEMU 7.2 cannot migrate vhost-user-fs: snapshots with RAM and suspend are refused
    up front with what to do instead, and a disk-only snapshot of the running VM works."""
    rw, _ro = _folders(tmp_path)
    cli("create", "vm", "--image", "tiny-linux", "--arch", "x86_64", "--nic", "none",
        "--share", f"{rw}:work")  # fmt: skip
    cli("disk", "add", "vm", "--size", "64MiB")
    cli("start", "vm", "--wait-ready")
    refused = cli("snapshot", "create", "vm", "with-ram", ok=False)
    assert "VirtioFS" in refused and "--disk-only" in refused and "vmdesk stop vm" in refused
    refused = cli("suspend", "vm", ok=False)
    assert "VirtioFS" in refused and "vmdesk stop vm" in refused
    assert cli.status("vm")["status"] == "running"  # nothing was paused or lost
    assert "snapshot disks-only" in cli("snapshot", "create", "vm", "disks-only", "--disk-only")
    listed = cli("snapshot", "list", "vm")
    assert "disks-only" in listed and "with-ram" not in listed
    refused = cli("snapshot", "revert", "vm", "disks-only", ok=False)
    assert "stop the VM first" in refused
    cli("stop", "vm", "--force")
    assert "reverted" in cli("snapshot", "revert", "vm", "disks-only")
