"""The web display and console of a VM on a host: the VNC server's banner and a command's
output through the web app's websockets, from a host on this machine (a descriptor from
libvirt) and one over SSH (a forward of the server's unix socket); no TCP port opened."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from tests.libvirt_daemon import Sshd
from tests.vm.conftest import CLI
from tests.web.conftest import LiveServer
from tests.web.test_vm_web import _read_until, _ws
from vmdesk.engines.libvirt import tunnel

pytestmark = pytest.mark.vm


@pytest.fixture
def served(lab: CLI) -> Iterator[LiveServer]:
    live = LiveServer(lab.home)
    yield live
    live.close()


def _listening_tcp() -> set[str]:
    done = subprocess.run(["ss", "-Htln"], capture_output=True, text=True, check=True)
    return {line.split()[3] for line in done.stdout.splitlines() if line.strip()}


def _banner(vnc: ClientConnection) -> bytes:
    return _read_until(vnc, b"\n")


def _tunnels() -> bool:
    """Whether an ssh forward of a display runs (its local socket's folder names it)."""
    found = subprocess.run(["pgrep", "-f", "ssh .*vmdesk-tunnel-"], capture_output=True,
                           check=False)  # fmt: skip
    return found.returncode == 0


def test_the_screen_and_console_of_a_vm_on_a_host_reach_the_web_page(
    lab: CLI, vm_name: str, served: LiveServer, sshd: Sshd
) -> None:
    lab("create", vm_name, "--host", "lab", "--image", "tiny-linux", "--arch", "x86_64",
        timeout=300)  # fmt: skip
    lab("host", "add", "far", sshd.uri)
    before = _listening_tcp()
    lab("start", f"lab:{vm_name}", "--wait-ready", "--timeout", "180", timeout=240)
    for host in ("lab", "far"):
        with _ws(served, f"/ws/vms/{host}:{vm_name}/vnc", subprotocols=["binary"]) as vnc:
            assert _banner(vnc).startswith(b"RFB 003.008\n"), host
    assert _listening_tcp() <= before, "the display opened no TCP port"

    with _ws(served, f"/ws/vms/far:{vm_name}/serial") as serial:
        serial.send("\recho $((6*7))-on-a-host\r")
        _read_until(serial, b"42-on-a-host")
    deadline = time.monotonic() + tunnel.CONNECT_WITHIN + 10  # its `sleep` ends, then ssh
    while _tunnels() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _tunnels(), "no SSH forward outlives its display"

    lab("stop", f"lab:{vm_name}", "--force")
    stopped = f"/ws/vms/lab:{vm_name}/vnc"
    with _ws(served, stopped) as vnc, pytest.raises(ConnectionClosed) as closed:
        vnc.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409
    assert "not running" in closed.value.rcvd.reason
