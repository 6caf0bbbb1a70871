"""A libvirtd for the whole run, an sshd leading to it, a second daemon (a user's session
libvirtd), and a private library per test
whose VMs on the hosts are removed afterwards (domains and their volumes)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.libvirt_daemon import SessionDaemon, Sshd, ensure_running
from tests.vm.conftest import CLI


@pytest.fixture(scope="session")
def system_uri() -> str:
    return ensure_running()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def lab2(system_uri: str) -> Iterator[SessionDaemon]:
    """A second daemon: an unprivileged user's session libvirtd."""
    daemon = SessionDaemon()
    yield daemon
    daemon.close()


def _virsh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True,
                          text=True, check=False, timeout=60)  # fmt: skip


def ours() -> set[str]:
    """Names of the domains on the test daemon that carry VM-Desk's metadata."""
    names = _virsh("list", "--all", "--name").stdout.split()
    return {n for n in names if "urn:vmdesk:vm:1" in _virsh("dumpxml", n).stdout}


@pytest.fixture
def lab(tmp_path: Path, system_uri: str, vm_name: str) -> Iterator[CLI]:
    """A CLI whose library knows host `lab` (this machine's libvirtd). The test's VMs on
    the daemon (named `vm_name` or `vm_name-...`) are destroyed and undefined afterwards,
    with their volumes; another run's VMs on the same daemon are left alone."""
    runner = CLI(tmp_path / "library")
    runner("host", "add", "lab", system_uri)
    yield runner
    for name in ours():
        if name != vm_name and not name.startswith(f"{vm_name}-"):
            continue
        _virsh("destroy", name)
        _virsh("undefine", name, "--nvram")
        listed = _virsh("vol-list", "vmdesk").stdout.splitlines()[2:]
        for volume in [line.split()[0] for line in listed if line.strip()]:
            if volume.startswith(f"{name}-"):
                _virsh("vol-delete", volume, "--pool", "vmdesk")


@pytest.fixture
def vm_name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def hosts_file(cli: CLI) -> dict[str, object] | None:
    path = cli.home / "hosts.json"
    return json.loads(path.read_text()) if path.exists() else None
