"""Saved launch plans: replayed only while everything they were derived from holds."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest

from vmdesk.core.layout import Layout
from vmdesk.engines.qemu import spawn
from vmdesk.supervisor import launch_plan


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    root = tmp_path / "vm.vmdesk"
    (root / "logs").mkdir(parents=True)
    (root / "config.json").write_text('{"name": "vm"}')
    return root


def _spec(bundle: Path, watched: Path) -> dict[str, object]:
    return {
        "engine": "qemu",
        "argv": ["qemu-system-aarch64", "-m", "256M"],
        "listen": {},
        "rotate": [],
        "remove": [],
        "log": str(bundle / "logs/engine.log"),
        "watch": [str(watched), str(bundle / "missing-on-purpose")],
        "accel_reason": "tcg: asked for",
    }


def _saved(bundle: Path, tmp_path: Path) -> tuple[str, dict[str, object], Path]:
    watched = tmp_path / "qemu-binary"
    watched.write_text("v1")
    (tmp_path / "share").mkdir()
    os.symlink(tmp_path / "share", bundle / "link")
    named = str(bundle / "link")
    key = launch_plan.key(bundle, (bundle / "config.json").read_bytes())
    spec = _spec(bundle, watched)
    launch_plan.save(Layout(bundle), key, spec, [(named, os.path.realpath(named), False)])
    return key, spec, watched


def test_a_saved_plan_is_replayed_while_nothing_changed(bundle: Path, tmp_path: Path) -> None:
    key, spec, _ = _saved(bundle, tmp_path)
    assert launch_plan.load(Layout(bundle), key) == spec


def test_the_key_covers_config_bytes_bundle_path_and_environment(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = (bundle / "config.json").read_bytes()
    key = launch_plan.key(bundle, config)
    assert launch_plan.key(bundle, config) == key  # deterministic
    assert launch_plan.key(bundle, config + b" ") != key
    assert launch_plan.key(bundle.with_name("other.vmdesk"), config) != key
    monkeypatch.setenv("VMDESK_ACCEL", "kvm")
    assert launch_plan.key(bundle, config) != key


def test_a_disk_rebased_onto_another_file_changes_the_key(bundle: Path, tmp_path: Path) -> None:
    """The isolation policy judged the disk's backing chain: a new chain is judged again."""
    import subprocess

    for name in ("a.raw", "b.raw"):
        (tmp_path / name).write_bytes(b"\0" * 4096)
    disk = bundle / "disks" / "d.qcow2"
    disk.parent.mkdir(exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(tmp_path / "a.raw"),
                    "-F", "raw", str(disk)], check=True)  # fmt: skip
    config = json.dumps({"disks": [{"file": "disks/d.qcow2", "format": "qcow2"}]}).encode()
    key = launch_plan.key(bundle, config)
    subprocess.run(["qemu-img", "rebase", "-u", "-b", str(tmp_path / "b.raw"), "-F", "raw",
                    str(disk)], check=True)  # fmt: skip
    assert launch_plan.key(bundle, config) != key


def test_a_changed_watched_file_makes_the_plan_stale(bundle: Path, tmp_path: Path) -> None:
    key, _, watched = _saved(bundle, tmp_path)
    watched.write_text("v2, a QEMU upgrade")
    assert launch_plan.load(Layout(bundle), key) is None


def test_a_watched_file_appearing_makes_the_plan_stale(bundle: Path, tmp_path: Path) -> None:
    key, _, _ = _saved(bundle, tmp_path)
    (bundle / "missing-on-purpose").write_text("now here")
    assert launch_plan.load(Layout(bundle), key) is None


def test_a_retargeted_symlink_makes_the_plan_stale(bundle: Path, tmp_path: Path) -> None:
    # The isolation verdict was given for where the path resolved then.
    key, _, _ = _saved(bundle, tmp_path)
    (bundle / "link").unlink()
    (tmp_path / "secrets").mkdir()
    os.symlink(tmp_path / "secrets", bundle / "link")
    assert launch_plan.load(Layout(bundle), key) is None


def test_another_key_a_damaged_file_or_an_unknown_engine_is_no_plan(
    bundle: Path, tmp_path: Path
) -> None:
    key, _, _ = _saved(bundle, tmp_path)
    files = Layout(bundle)
    assert launch_plan.load(files, "0" * 64) is None
    plan = json.loads(files.launch_plan.read_text())
    plan["spec"]["engine"] = "something-else"
    files.launch_plan.write_text(json.dumps(plan))
    assert launch_plan.load(files, key) is None
    files.launch_plan.write_text('{"key": ')
    assert launch_plan.load(files, key) is None
    launch_plan.forget(files)
    assert not files.launch_plan.exists()
    launch_plan.forget(files)  # forgetting twice is fine


def test_spawn_hands_over_exactly_stdio_and_the_sockets_at_fixed_fds(tmp_path: Path) -> None:
    probe = (
        "import os, socket\n"
        "fds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\n"
        "kinds = [socket.socket(fileno=fd).getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)"
        " for fd in (3, 4)]\n"
        "print(fds[:5], len(fds), kinds)\n"
    )
    stray = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(stray, True)  # as if whoever started the supervisor leaked one
    log = tmp_path / "engine.log"
    spec = {
        "argv": [sys.executable, "-c", probe],
        "listen": {
            str(spawn.QMP_FD): str(tmp_path / "qmp.sock"),
            str(spawn.SERIAL_FD): str(tmp_path / "serial.sock"),
        },
        "rotate": [str(tmp_path / "serial.log")],
        "remove": [str(tmp_path / "vnc.sock")],
        "log": str(log),
    }
    (tmp_path / "serial.log").write_text("last run")
    (tmp_path / "vnc.sock").write_text("stale")
    try:
        spawned = spawn.spawn(spec)
        assert spawned.qemu.wait(timeout=30) == 0 and spawned.helpers == []
    finally:
        os.close(stray)
    lines = log.read_text().splitlines()
    assert lines[0].startswith("+ ") and sys.executable in lines[0]
    # fds 0-4 and the one listing /proc/self/fd: nothing of ours leaked
    assert lines[-1] == "[0, 1, 2, 3, 4] 6 [1, 1]"
    assert (tmp_path / "serial.log.1").read_text() == "last run"
    assert not (tmp_path / "vnc.sock").exists()
    client = socket.socket(socket.AF_UNIX)
    with pytest.raises(ConnectionRefusedError):  # the child owned the listening sockets
        client.connect(str(tmp_path / "qmp.sock"))


def test_spawn_pairs_a_helper_with_qemu_and_kills_it_when_qemu_cannot_start(
    tmp_path: Path,
) -> None:
    echo = "import os\nos.write(3, os.read(3, 100).upper())\n"  # the helper answers on fd 3
    ask = "import os\nos.write(5, b'ping')\nprint(os.read(5, 100).decode())\n"
    helper = {"argv": [sys.executable, "-c", echo], "log": str(tmp_path / "helper.log"),
              "engine_fd": 5}  # fmt: skip
    spec = {"argv": [sys.executable, "-c", ask], "listen": {}, "rotate": [], "remove": [],
            "log": str(tmp_path / "engine.log"), "helpers": [helper]}  # fmt: skip
    spawned = spawn.spawn(spec)
    assert spawned.qemu.wait(timeout=30) == 0 and spawned.helpers[0].wait(timeout=30) == 0
    assert (tmp_path / "engine.log").read_text().splitlines()[-1] == "PING"
    marker = f"# helper of {tmp_path}"
    sleeper = {**helper, "argv": [sys.executable, "-c", f"import time; time.sleep(60)  {marker}"]}
    broken = {**spec, "argv": [str(tmp_path / "no-such-qemu")], "helpers": [sleeper]}
    with pytest.raises(FileNotFoundError):
        spawn.spawn(broken)
    alive = []
    for proc in Path("/proc").iterdir():
        try:
            if marker.encode() in (proc / "cmdline").read_bytes():
                alive.append(proc.name)
        except OSError:
            continue
    assert alive == []  # the helper started for it was killed and reaped


def test_a_uefi_vm_with_shares_watches_firmware_descriptors_and_virtiofsd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new firmware descriptor, or virtiofsd installed or removed, changes what a fresh
    start would run: the plan must notice."""
    from vmdesk.core.config import from_dict
    from vmdesk.core.layout import Layout, Sockets
    from vmdesk.engines.qemu import firmware
    from vmdesk.engines.qemu.doctor import VIRTIOFSD_PLACES
    from vmdesk.engines.qemu.launch import launch_spec

    monkeypatch.setenv("VMDESK_ACCEL", "tcg")
    (tmp_path / "vm" / "logs").mkdir(parents=True)
    shared = tmp_path / "shared"
    shared.mkdir()
    config = from_dict({"name": "vm", "arch": "x86_64", "boot": {"kind": "uefi"},
                        "shares": [{"tag": "s", "path": str(shared), "mode": "9p"}]})  # fmt: skip
    watch = launch_spec(config, Layout(tmp_path / "vm"), Sockets(tmp_path / "run"))["watch"]
    assert {str(p) for p in firmware.watch_paths()} <= set(watch)
    assert {str(p) for p in VIRTIOFSD_PLACES} <= set(watch)
