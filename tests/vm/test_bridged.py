"""Bridged networking for real: a bridge in the test's own network namespace (so nothing on
the host's network is touched), a DHCP server on it, and a guest whose tap joins it."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vm.conftest import CLI

pytestmark = pytest.mark.vm

BRIDGE = "vmdbr0"
HOST_ADDRESS = "10.213.0.1"


def _ns(ns: str, *argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], text=True, capture_output=True,
                          check=True, timeout=60, **kwargs)  # type: ignore[call-overload]  # fmt: skip


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[str]:
    """A network namespace with a bridge at 10.213.0.1/24 and busybox's DHCP server on it."""
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace and a bridge needs root (CI runs as root)")
    ns = f"vmdesk-test-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    udhcpd = None
    try:
        _ns(ns, "ip", "link", "set", "lo", "up")
        _ns(ns, "ip", "link", "add", BRIDGE, "type", "bridge", "forward_delay", "0")
        _ns(ns, "ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", BRIDGE)
        _ns(ns, "ip", "link", "set", BRIDGE, "up")
        conf = tmp_path / "udhcpd.conf"
        conf.write_text(
            f"start 10.213.0.10\nend 10.213.0.20\ninterface {BRIDGE}\n"
            f"lease_file {tmp_path}/leases\npidfile {tmp_path}/udhcpd.pid\n"
            "option subnet 255.255.255.0\noption lease 600\n"
        )
        (tmp_path / "leases").touch()
        udhcpd = subprocess.Popen(["ip", "netns", "exec", ns, "busybox", "udhcpd", "-f", str(conf)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        yield ns
    finally:
        if udhcpd is not None:
            udhcpd.kill()
            udhcpd.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_a_bridged_guest_talks_to_an_address_on_the_bridge(cli: CLI, netns: str) -> None:
    cli("create", "vm", "--image", "tiny-linux", "--arch", "x86_64",
        "--nic", f"bridged:{BRIDGE}", "--isolation", "unrestricted")  # fmt: skip
    # Started inside the namespace: the supervisor and QEMU live there with the bridge.
    started = _ns(netns, sys.executable, "-m", "vmdesk.cli.main", "start", "vm", "--wait-ready",
                  env=cli.env).stdout  # fmt: skip
    found = re.search(r"net=eth0=(10\.213\.0\.\d+)/24", started)
    assert found, f"the guest got no address from the bridge's DHCP server: {started}"
    guest = found[1]
    ports = _ns(netns, "ip", "-br", "link", "show", "master", BRIDGE).stdout
    assert re.search(r"^vmdesk\d+", ports, re.MULTILINE), ports  # our tap, on the bridge
    console = cli.console("vm")
    try:
        assert "1 packets received" in console.run(f"ping -c 1 -W 5 {HOST_ADDRESS}", timeout=30)
    finally:
        console.close()
    _ns(netns, "busybox", "ping", "-c", "1", "-W", "5", guest)  # and back (check=True asserts)
    cli("stop", "vm", "--force")
    assert "vmdesk" not in _ns(netns, "ip", "-br", "link").stdout  # the tap went with QEMU


def test_an_isolated_vm_may_not_be_bridged(cli: CLI) -> None:
    cli("create", "vm", "--image", "tiny-linux", "--nic", f"bridged:{BRIDGE}")
    out = cli("start", "vm", ok=False)
    assert "bridged networking puts an isolated VM on the host's network" in out
    assert "--isolation unrestricted" in out
