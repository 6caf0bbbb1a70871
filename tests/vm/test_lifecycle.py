"""VMs through the product: create, start (detached supervisor), pause, resume, stop, crash."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.vm.conftest import CLI
from vmdesk.core import processes
from vmdesk.core.arch import ARCHES, Arch
from vmdesk.engines.qemu.process import SerialConsole
from vmdesk.images import tiny_linux
from vmdesk.supervisor import status as vmstatus

pytestmark = pytest.mark.vm
READY = 90.0


def _uptime(console: SerialConsole) -> float:
    return float(console.run("cut -d' ' -f1 /proc/uptime").split()[-1])


@pytest.mark.parametrize("arch", ARCHES)
def test_start_pause_resume_stop(cli: CLI, arch: Arch) -> None:
    cli("create", "vm", "--image", "tiny-linux", "--arch", arch)
    out = cli("start", "vm", "--wait-ready")
    assert "started vm" in out and "ready after" in out
    # The supervisor's engine choice and its reason (a Linux host: never vz).
    assert (
        "engine: qemu (auto: the vz engine (Apple Virtualization.framework) runs only on macOS"
        in out
    )
    assert cli.status("vm")["status"] == "running"
    console = cli.console("vm")
    try:
        assert console.run("echo $((6*7))") == "42"
        before, wall_before = _uptime(console), time.monotonic()
        cli("pause", "vm")
        assert cli.status("vm")["status"] == "paused"
        time.sleep(3.0)
        cli("resume", "vm")
        assert cli.status("vm")["status"] == "running"
        after, wall_after = _uptime(console), time.monotonic()
        # The guest's clock stands still while paused: it saw at least 2 s less than we did.
        assert (after - before) < (wall_after - wall_before) - 2.0, "the clock ran while paused"
        time.sleep(0.5)
        assert _uptime(console) > after  # and runs again after resume
    finally:
        console.close()
    assert "powered off" in cli("stop", "vm", "--timeout", "30")
    assert cli.status("vm")["status"] == "stopped"
    events = [json.loads(line)["event"] for line in (cli.bundle("vm") / "logs/events.jsonl").open()]
    for name in ("STARTED", "STOP", "RESUME", "POWERDOWN", "SHUTDOWN", "STOPPED"):
        assert name in events
    assert not list((cli.bundle("vm") / "run").iterdir())  # the bundle is left clean


def test_stop_forces_a_guest_that_ignores_the_power_button(cli: CLI) -> None:
    cli("create", "deaf", "--image", "tiny-linux")
    cli("start", "deaf", "--wait-ready")
    console = cli.console("deaf")
    try:
        console.run("killall -STOP dd")  # freeze the power-button watchers: button ignored
    finally:
        console.close()
    assert "forced off" in cli("stop", "deaf", "--timeout", "2")
    assert cli.status("deaf")["status"] == "stopped"
    cli("start", "deaf", "--wait-ready")
    assert "forced off" in cli("stop", "deaf", "--force")


def test_vm_outlives_the_cli_and_another_cli_stops_it(cli: CLI) -> None:
    cli("create", "bg", "--image", "tiny-linux")
    cli("start", "bg")  # this CLI process has exited now
    shown = json.loads(cli("show", "bg", "--json"))
    assert shown["status"] in ("running", "starting")
    listed = json.loads(cli("list", "--json"))
    assert listed[0]["status"] == "running"
    assert "already running" in cli("start", "bg")
    cli("stop", "bg", "--force")
    assert json.loads(cli("list", "--json"))[0]["status"] == "stopped"


def _qemu_pids(uuid: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and b"qemu-system" in cmdline[0] and uuid.encode() in cmdline:
            found.append(int(proc.name))
    return found


def test_kill_9_of_qemu_is_reported_as_crashed_and_restart_works(cli: CLI) -> None:
    cli("create", "crashy", "--image", "tiny-linux")
    cli("start", "crashy", "--wait-ready")
    uuid = json.loads(cli("show", "crashy", "--json"))["config"]["uuid"]
    (pid,) = _qemu_pids(uuid)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 1.0
    while vmstatus.derive(cli.bundle("crashy"))["status"] != "crashed":
        assert time.monotonic() < deadline, "not reported as crashed within a second"
        time.sleep(0.05)
    status = cli.status("crashy")
    assert "SIGKILL" in status["reason"]
    assert not list((cli.bundle("crashy") / "run").iterdir())
    cli("start", "crashy", "--wait-ready")
    assert cli.status("crashy")["status"] == "running"
    cli("stop", "crashy", "--force")


def test_kill_9_of_the_supervisor_takes_the_vm_down_cleanly(cli: CLI) -> None:
    """Documented behaviour: QEMU dies with its supervisor (PR_SET_PDEATHSIG), the VM shows
    as crashed with the reason, stale files are cleaned, and it starts again."""
    cli("create", "orphan", "--image", "tiny-linux")
    cli("start", "orphan", "--wait-ready")
    uuid = json.loads(cli("show", "orphan", "--json"))["config"]["uuid"]
    supervisor = processes.pid_in(cli.bundle("orphan") / "run/supervisor.pid")
    os.kill(supervisor, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _qemu_pids(uuid):
        assert time.monotonic() < deadline, "QEMU outlived its supervisor"
        time.sleep(0.05)
    status = cli.status("orphan")
    assert status["status"] == "crashed" and "supervisor" in status["reason"]
    assert not list((cli.bundle("orphan") / "run").iterdir())
    cli("start", "orphan", "--wait-ready")
    cli("stop", "orphan", "--force")


def test_ten_concurrent_starts_make_one_vm(cli: CLI) -> None:
    cli("create", "race", "--image", "tiny-linux")
    uuid = json.loads(cli("show", "race", "--json"))["config"]["uuid"]
    with ThreadPoolExecutor(10) as pool:
        outputs = list(pool.map(lambda _: cli("start", "race"), range(10)))
    assert sum("started race" in out for out in outputs) == 1
    assert sum("already running" in out for out in outputs) == 9
    assert len(_qemu_pids(uuid)) == 1
    cli("stop", "race", "--force")
    assert _qemu_pids(uuid) == []


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tcp_and_udp_port_forwards_reach_the_guest(cli: CLI) -> None:
    tcp, udp = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    cli("create", "web", "--image", "tiny-linux",
        "--forward", f"tcp:{tcp}:80", "--forward", f"udp:{udp}:5353")  # fmt: skip
    cli("start", "web", "--wait-ready")
    console = cli.console("web")
    try:
        console.run("mkdir -p /www && echo hello over tcp > /www/index.html && httpd -p 80 -h /www")
        console.run("(nc.traditional -u -l -p 5353 -c 'echo hello over udp' &) ; sleep 0.3")
    finally:
        console.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{tcp}/index.html", timeout=20) as reply:
        assert reply.read() == b"hello over tcp\n"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        client.sendto(b"ping\n", ("127.0.0.1", udp))
        data, _ = client.recvfrom(100)
    assert data == b"hello over udp\n"
    cli("stop", "web", "--force")


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_screenshot_is_a_png_of_the_configured_resolution(cli: CLI, tmp_path: Path) -> None:
    cli("create", "screen", "--image", "tiny-linux", "--resolution", "1024x768")
    cli("start", "screen", "--wait-ready")
    shot = tmp_path / "shot.png"
    deadline = time.monotonic() + 20
    while True:  # the guest's virtio-gpu driver sets the mode shortly after boot
        cli("screenshot", "screen", str(shot))
        if _png_size(shot) == (1024, 768) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert _png_size(shot) == (1024, 768)
    cli("stop", "screen", "--force")


def test_reboot_boots_the_guest_again(cli: CLI) -> None:
    cli("create", "again", "--image", "tiny-linux")
    cli("start", "again", "--wait-ready")
    console = cli.console("again")
    try:
        console.run("echo first boot")  # also waits out the replay of earlier output
        mark = console.mark()
        cli("reboot", "again")
        ready = console.wait_for(tiny_linux.READY_PATTERN, READY, start=mark)  # a second boot
        console.wait_for("vmdesk-tiny# ", 30, start=ready.end())  # its shell is up
        time.sleep(1)  # a shell that just started may drop what is typed while it sets up
        output = console.run("echo rebooted")
        assert output.splitlines()[-1:] == ["rebooted"], repr(output)
    finally:
        console.close()
    assert cli.status("again")["status"] == "running"
    cli("stop", "again", "--force")


def test_console_log_and_errors(cli: CLI) -> None:
    cli("create", "logs", "--image", "tiny-linux")
    assert "not running" in cli("console", "logs", ok=False)
    assert "not running" in cli("pause", "logs", ok=False)
    cli("start", "logs", "--wait-ready")
    cli("stop", "logs", "--force")
    log = cli("console", "logs", "--log")
    assert tiny_linux.READY_MARKER in log
