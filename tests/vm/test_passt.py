"""NAT on passt where it is installed, on QEMU's slirp where it is not: the tiny guest's
port forwards (TCP and UDP), its IPv6 from passt, and what `vmdesk show` says."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import time
import urllib.request
from pathlib import Path

import pytest

from tests.vm.conftest import CLI

pytestmark = pytest.mark.vm
ROUND_TRIPS = 20


def _free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(cli: CLI, name: str) -> None:
    """A web page on TCP 80 and an answer on UDP 5353, in the guest."""
    console = cli.console(name)
    try:
        console.run("mkdir -p /www && echo hello over tcp > /www/index.html && httpd -p 80 -h /www")
        console.run("(nc.traditional -u -l -p 5353 -c 'echo hello over udp' &) ; sleep 0.3")
    finally:
        console.close()


def _check_forwards(tcp: int, udp: int) -> float:
    """Both forwards answer; returns the median round trip of a web page, in ms."""
    url = f"http://127.0.0.1:{tcp}/index.html"
    with urllib.request.urlopen(url, timeout=20) as reply:
        assert reply.read() == b"hello over tcp\n"
    times = []
    for _ in range(ROUND_TRIPS):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=20) as reply:
            reply.read()
        times.append((time.perf_counter() - started) * 1000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        client.sendto(b"ping\n", ("127.0.0.1", udp))
        data, _ = client.recvfrom(100)
    assert data == b"hello over udp\n"
    return statistics.median(times)


def _passt_pids(tcp: int) -> list[int]:
    """passt processes serving the TCP forward from host port ``tcp``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--fd" in argv and f"127.0.0.1/{tcp}:80".encode() in argv:
            found.append(int(proc.name))
    return found


def _path_without_passt(tmp_path: Path) -> str:
    """The test's PATH with passt hidden: each PATH directory holding passt is replaced by
    a directory of links to everything in it but passt (so QEMU and the rest stay)."""
    dirs = []
    for index, entry in enumerate(os.environ["PATH"].split(os.pathsep)):
        if not (Path(entry) / "passt").exists():
            dirs.append(entry)
            continue
        shadow = tmp_path / f"path-{index}"
        shadow.mkdir()
        for item in Path(entry).iterdir():
            if not item.name.startswith("passt"):
                (shadow / item.name).symlink_to(item)
        dirs.append(str(shadow))
    path = os.pathsep.join(dirs)
    assert shutil.which("passt", path=path) is None
    assert shutil.which("qemu-system-x86_64", path=path) is not None
    return path


def _nat(cli: CLI, name: str) -> dict[str, str]:
    return dict(json.loads(cli("show", name, "--json"))["nat"]["0"])


def test_nat_is_passt_where_installed_and_slirp_where_not(cli: CLI, tmp_path: Path) -> None:
    assert shutil.which("passt"), "passt is not installed: `sudo apt-get install passt`"
    tcp, udp = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    cli("create", "web", "--image", "tiny-linux", "--arch", "x86_64", "--nic", "nat:passt",
        "--forward", f"tcp:{tcp}:80", "--forward", f"udp:{udp}:5353")  # fmt: skip

    # passt: the guest gets slirp's IPv4 address from passt's DHCP, and IPv6 by NDP
    started = cli("start", "web", "--wait-ready")
    assert "net=eth0=10.0.2.15/24" in started
    [pid] = _passt_pids(tcp)
    assert _nat(cli, "web")["backend"] == "passt"
    assert re.search(r"last start: passt \(asked for: /\S+/passt\)", cli("show", "web"))
    log = (cli.bundle("web") / "logs/passt-nic0.log").read_text()
    assert f"-t 127.0.0.1/{tcp}:80 -u 127.0.0.1/{udp}:5353" in log.splitlines()[0]
    _serve(cli, "web")
    console = cli.console("web")
    try:
        ipv6 = ""
        for _ in range(20):  # router advertisements come a moment after the link is up
            ipv6 = console.run("ip -6 -o addr show dev eth0 scope global; ip -6 route")
            if "inet6" in ipv6 and "default via" in ipv6:
                break
            time.sleep(0.5)
        assert re.search(r"inet6 [0-9a-f:]+/64 scope global", ipv6), ipv6
        assert re.search(r"default via fe80::\S+ dev eth0", ipv6), ipv6
    finally:
        console.close()
    passt_ms = _check_forwards(tcp, udp)
    cli("stop", "web")
    deadline = time.monotonic() + 5
    while _passt_pids(tcp) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _passt_pids(tcp) == [], f"passt {pid} outlived its VM"

    # "auto" on a TCG guest: slirp although passt is there, and why (bench P22)
    cli("edit", "web", "--nic", "nat", "--forward", f"tcp:{tcp}:80", "--forward",
        f"udp:{udp}:5353")  # fmt: skip
    cli("start", "web", "--wait-ready")
    nat = _nat(cli, "web")
    assert nat["backend"] == "slirp" and "bench P22" in nat["reason"], nat
    assert _passt_pids(tcp) == []
    cli("stop", "web")

    # passt hidden from the CLI's PATH: slirp, said so, and the forwards still work
    cli.env["PATH"] = _path_without_passt(tmp_path)
    started = cli("start", "web", "--wait-ready")
    assert "net=eth0=10.0.2.15/24" in started  # the same address on either backend
    nat = _nat(cli, "web")
    assert nat["backend"] == "slirp" and "apt-get install passt" in nat["reason"]
    assert "last start: slirp (passt is not installed" in cli("show", "web")
    assert _passt_pids(tcp) == []
    _serve(cli, "web")
    slirp_ms = _check_forwards(tcp, udp)
    cli("stop", "web")
    events = (json.loads(line) for line in (cli.bundle("web") / "logs/events.jsonl").open())
    launches = [e["data"]["launch"] for e in events if e["event"] == "STARTED"]
    assert launches == ["fresh", "fresh", "fresh"]  # no saved plan was replayed
    print(f"web page round trip through the TCP forward (median of {ROUND_TRIPS}, TCG guest): "
          f"passt {passt_ms:.1f} ms, slirp {slirp_ms:.1f} ms")  # fmt: skip
