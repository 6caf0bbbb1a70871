"""The guests' agents on a real desktop guest (the debian-desktop image, x86_64, under
TCG): qemu-ga answers `vmdesk ip` and `exec`, spice-vdagent carries the clipboard both
ways (text and PNG, 1 MiB and 4 MiB) and the display's size, and both survive what a
guest goes through: an agent's restart, a reboot, a snapshot's revert and a suspend.

One guest is booted for the module and each test leaves it running for the next, in
file order; the last one stops it through its guest agent."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.agents_report import agents_report
from tests.vm.conftest import CLI
from vmdesk.core.arch import Arch
from vmdesk.core.states import ENDED
from vmdesk.images import desktop
from vmdesk.supervisor import status as vmstatus

pytestmark = [pytest.mark.vm, pytest.mark.timeout(900)]

VM = "agents"
# The session's X display, as its user (the agent in the session holds the clipboard).
AS_USER = ["sudo", "-u", "alice", "env", "DISPLAY=:0", "XAUTHORITY=/home/alice/.Xauthority"]
BOOT_TIMEOUT = 480.0  # to the desktop session, under TCG on a busy 2-core machine
MIB = 1 << 20


def _vmdesk(cli: CLI, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "vmdesk.cli.main", *args], input=stdin,
                          capture_output=True, env=cli.env, timeout=300, check=False)  # fmt: skip


def _guest(cli: CLI, *argv: str, stdin: bytes | None = None) -> bytes:
    """Run ``argv`` in the guest through its agent; its stdout (it must succeed)."""
    extra = ["--stdin"] if stdin is not None else []
    done = _vmdesk(cli, "exec", *extra, VM, "--", *argv, stdin=stdin)
    assert done.returncode == 0, (argv, done.stdout[-500:], done.stderr[-2000:])
    return done.stdout


def _guest_paste(cli: CLI, kind: str = "UTF8_STRING") -> bytes | None:
    """What a paste in the guest's session gives; None when nothing is there to paste."""
    paste = [*AS_USER, "xclip", "-o", "-selection", "clipboard", "-t", kind]
    done = _vmdesk(cli, "exec", VM, "--", *paste)
    return done.stdout if done.returncode == 0 else None


def _guest_copy(cli: CLI, data: bytes, kind: str = "UTF8_STRING") -> None:
    # xclip stays behind to serve the selection: its output must not be the agent's pipe.
    script = f"cat > /tmp/clip && xclip -i -selection clipboard -t {kind} /tmp/clip >/dev/null 2>&1"
    _guest(cli, *AS_USER, "sh", "-c", script, stdin=data)


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.5)


def _listed_os(cli: CLI) -> str | None:
    [row] = [r for r in json.loads(cli("list", "--json")) if r["name"] == VM]
    return row["os"]  # type: ignore[no-any-return]


def _agents(cli: CLI) -> dict[str, str]:
    return dict(cli.status(VM).get("agents", {}))


def _wait_session(cli: CLI, action: Callable[[], object] | None = None) -> None:
    """Do ``action`` (a reboot), then wait until the desktop session is up and both agents
    answer."""
    console = cli.console(VM)
    try:
        time.sleep(1.0)  # the console's replay of earlier output has arrived: skip it
        mark = console.mark()
        if action is not None:
            action()
        console.wait_for(desktop.DESKTOP_PATTERN, BOOT_TIMEOUT, start=mark)
    finally:
        console.close()
    try:
        _until(lambda: _agents(cli) == {"guest_agent": "connected", "spice_agent": "connected"},
               120, "both agents connected")  # fmt: skip
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{agents_report(cli.env, VM)}") from None


def _settled(cli: CLI) -> None:
    """Right after the session starts, its agent may take an offer without serving it yet:
    offer until a paste in the guest gets it."""

    def pasted() -> bool:
        cli("clipboard", VM, "--set", "settled")
        return _guest_paste(cli) == b"settled"

    _until(pasted, 90, "the session's first paste")


@pytest.fixture(scope="module")
def guest(
    tmp_path_factory: pytest.TempPathFactory, desktop_image: Callable[[Arch], desktop.DesktopImage]
) -> Iterator[CLI]:
    desktop_image("x86_64")
    cli = CLI(tmp_path_factory.mktemp("agents") / "library")
    cli("create", VM, "--image", "debian-desktop", "--arch", "x86_64", "--user", "alice",
        "--cpus", "2", "--memory", "2GiB")  # fmt: skip
    cli("start", VM)
    try:
        _wait_session(cli)  # the session's marker is a minute away yet
        _settled(cli)
        yield cli
    finally:
        if vmstatus.derive(cli.bundle(VM))["status"] not in ENDED:
            cli("stop", VM, "--force", ok=None)


def test_ip_os_and_exec_come_from_the_guest_agent(guest: CLI) -> None:
    assert guest("ip", VM).strip() == "10.0.2.15"  # QEMU's user network gives this one
    shown = json.loads(guest("show", VM, "--json"))
    assert shown["guest"]["os"]["name"] == "Debian GNU/Linux 12 (bookworm)"
    assert shown["guest"]["ipv4"] == "10.0.2.15" and shown["guest"]["host_name"] == VM
    assert {f["name"]: f["available"] for f in shown["features"]}["guest_agent"] is True
    assert "guest    Debian GNU/Linux 12 (bookworm), 10.0.2.15" in guest("show", VM)
    _until(lambda: _listed_os(guest) == "Debian GNU/Linux 12 (bookworm)", 30, "the OS listed")

    done = _vmdesk(guest, "exec", VM, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (done.returncode, done.stdout, done.stderr) == (7, b"out\n", b"err\n")
    payload = bytes(random.Random(1).randrange(256) for _ in range(200_000))
    assert _guest(guest, "cat", stdin=payload) == payload  # stdin and binary output intact


def test_text_goes_both_ways_through_the_clipboard(guest: CLI) -> None:
    guest("clipboard", VM, "--set", "from the host: grüße ✓")
    assert _guest_paste(guest).decode() == "from the host: grüße ✓"
    _guest_copy(guest, "from the guest: ünïcode ✓".encode())
    _until(lambda: "from the guest" in guest("clipboard", VM), 20, "the guest's copy seen")
    assert guest("clipboard", VM) == "from the guest: ünïcode ✓"

    big = ("".join(random.Random(2).choice("abcdefgh \n") for _ in range(MIB))).encode()
    guest("clipboard", VM, "--file", str(_write(guest.home.parent / "big.txt", big)))
    assert _guest_paste(guest) == big
    _guest_copy(guest, big[::-1])
    _until(lambda: _host_clipboard(guest) == big[::-1], 30, "1 MiB back from the guest")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _host_clipboard(cli: CLI, *extra: str) -> bytes:
    done = _vmdesk(cli, "clipboard", VM, *extra)
    return done.stdout if done.returncode == 0 else b""


def _noise_png(path: Path, side: int) -> bytes:
    """A PNG of random pixels (it does not compress): about 3 * side**2 bytes."""
    rng = random.Random(side)
    Image.frombytes("RGB", (side, side), rng.randbytes(3 * side * side)).save(path, "PNG")
    return path.read_bytes()


def test_a_4_mib_png_goes_both_ways(guest: CLI, tmp_path: Path) -> None:
    png = _noise_png(tmp_path / "noise.png", 1200)
    assert len(png) > 4 * MIB
    guest("clipboard", VM, "--file", str(tmp_path / "noise.png"))
    assert _guest_paste(guest, "image/png") == png

    back = _noise_png(tmp_path / "back.png", 1190)
    _guest_copy(guest, back, "image/png")
    out = tmp_path / "out.png"

    def arrived() -> bool:
        done = _vmdesk(guest, "clipboard", VM, "--type", "image/png", "--output", str(out))
        return done.returncode == 0 and out.read_bytes() == back

    _until(arrived, 30, "the guest's PNG on the host")


@pytest.fixture
def host_display(tmp_path: Path) -> Iterator[str]:
    """A host X server of our own (Xvfb) for --sync to bridge."""
    display = f":{random.Random().randrange(100, 900)}"
    server = subprocess.Popen([shutil.which("Xvfb") or "Xvfb", display, "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    _until(lambda: Path(f"/tmp/.X11-unix/X{display[1:]}").exists(), 20, "Xvfb up")
    # Its socket can be there before it serves (once seen in CI: xclip then failed).
    answers = ["xprop", "-display", display, "-root", "-len", "0", "_NET_SUPPORTED"]
    _until(lambda: subprocess.run(answers, capture_output=True).returncode == 0, 20,
           "Xvfb answering")  # fmt: skip
    yield display
    server.terminate()
    server.wait()


def test_sync_bridges_the_host_desktop_clipboard_both_ways(guest: CLI, host_display: str) -> None:
    env = {**guest.env, "DISPLAY": host_display}
    env.pop("WAYLAND_DISPLAY", None)
    xclip = ["xclip", "-selection", "clipboard"]
    sync = subprocess.Popen([sys.executable, "-m", "vmdesk.cli.main", "clipboard", VM, "--sync"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        assert sync.stdout is not None
        assert b"follows" in sync.stdout.readline()  # it bridges from now on

        def copy_on_host() -> bool:  # xclip's child keeps serving: no pipe may wait on it
            done = subprocess.run([*xclip, "-i"], input=b"copied on the host", env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            return done.returncode == 0

        _until(copy_on_host, 20, "xclip to take the host's copy")
        _until(lambda: _guest_paste(guest) == b"copied on the host", 30, "the host's copy")
        _guest_copy(guest, b"copied in the guest")

        def on_host() -> bool:
            done = subprocess.run([*xclip, "-o"], env=env, capture_output=True, check=False)
            return done.stdout == b"copied in the guest"

        _until(on_host, 30, "the guest's copy on the host's desktop")
    finally:
        sync.send_signal(signal.SIGINT)
        try:
            out, _ = sync.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            sync.kill()
            out = b"did not end on Ctrl-C: " + sync.communicate()[0]
    assert b"stopped after" in out, out


def test_the_display_follows_a_resize(guest: CLI, tmp_path: Path) -> None:
    def size() -> str:
        return _guest(guest, *AS_USER, "xdpyinfo").decode().split("dimensions:")[1].split()[0]

    assert "(now)" in guest("display", VM, "--resolution", "1024x768")
    _until(lambda: size() == "1024x768", 30, "the guest's X screen at 1024x768")
    guest("screenshot", VM, str(tmp_path / "shot.png"))
    with Image.open(tmp_path / "shot.png") as shot:
        assert shot.size == (1024, 768)
    guest("display", VM, "--resolution", "1280x800")
    _until(lambda: size() == "1280x800", 30, "back at 1280x800")


def test_the_clipboard_survives_a_restart_of_the_guest_agent(guest: CLI) -> None:
    events = guest.bundle(VM) / "logs/events.jsonl"
    before = events.read_text().count('"vdagent0"')
    _guest(guest, "systemctl", "restart", "spice-vdagentd")
    _until(lambda: events.read_text().count('"vdagent0"') > before, 60, "the port reopened")
    _until(lambda: _agents(guest)["spice_agent"] == "connected", 60, "the agent back")
    guest("clipboard", VM, "--set", "after the agent's restart")
    _until(lambda: _guest_paste(guest) == b"after the agent's restart", 30, "the paste")


def _clock_skew(cli: CLI) -> float:
    guest_now = float(_guest(cli, "date", "+%s.%N"))
    return abs(guest_now - time.time())


def test_snapshots_with_the_channels_attached_and_the_clock_after_a_revert(guest: CLI) -> None:
    quiesced = guest("snapshot", "create", VM, "disks", "--disk-only")
    assert "disks" in quiesced
    tree = json.loads(guest("snapshot", "list", VM, "--json"))
    snap = next(s for s in tree["snapshots"] if s["name"] == "disks")
    assert snap["quiesced"] is True and snap["ram"] is False
    # thawed again: writing to the root file system works
    assert _guest(guest, "sh", "-c", "echo thawed > /root/after && sync && cat /root/after")

    guest("snapshot", "create", VM, "live")  # RAM too: the agents' channels allow it
    time.sleep(15)  # the guest's clock goes back 15 s with the revert, unless it is set
    guest("snapshot", "revert", VM, "live")
    _until(lambda: _clock_skew(guest) < 2.0, 30, "the guest's clock set after the revert")
    guest("clipboard", VM, "--set", "after the revert")
    _until(lambda: _guest_paste(guest) == b"after the revert", 30, "the paste after a revert")


def test_the_clock_and_the_clipboard_after_a_suspend_and_resume(guest: CLI) -> None:
    guest("suspend", VM)
    time.sleep(10)
    guest("start", VM)
    _until(lambda: _clock_skew(guest) < 2.0, 30, "the guest's clock set after the resume")
    _until(lambda: _agents(guest)["spice_agent"] == "connected", 60, "the SPICE agent")
    guest("clipboard", VM, "--set", "after the resume")
    _until(lambda: _guest_paste(guest) == b"after the resume", 30, "the paste after a resume")


def test_the_clipboard_after_a_reboot(guest: CLI) -> None:
    _wait_session(guest, lambda: guest("reboot", VM))
    guest("clipboard", VM, "--set", "after the reboot")
    _until(lambda: _guest_paste(guest) == b"after the reboot", 30, "the paste after a reboot")


def test_stop_asks_the_guest_agent_when_the_power_button_is_ignored(guest: CLI) -> None:
    # logind ignores the power button while this inhibitor holds; the agent still works.
    _guest(guest, "sh", "-c", "setsid systemd-inhibit --what=handle-power-key --mode=block "
           "sleep infinity >/dev/null 2>&1 < /dev/null &")  # fmt: skip
    _until(lambda: b"handle-power-key" in _guest(guest, "systemd-inhibit", "--list"), 20,
           "the inhibitor")  # fmt: skip
    out = guest("stop", VM, "--timeout", "60")
    assert "powered off" in out and "forced" not in out, out
    assert os.path.exists(guest.bundle(VM) / "logs/last-exit.json")
    assert _listed_os(guest) == "Debian GNU/Linux 12 (bookworm)"  # what it last ran
