"""Shared folders without a guest: how a share is spelled, which mode it gets, what runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from vmdesk.core import specs
from vmdesk.core.config import VMConfig, from_dict
from vmdesk.core.errors import EngineError, HostToolMissing, NotFound, VMDeskError
from vmdesk.core.layout import Layout
from vmdesk.engines.qemu import launch, spawn
from vmdesk.engines.qemu.vm_argv import Runtime, build_vm

BUNDLE = Path("/vms/example.vmdesk")
LINUX = {"kind": "linux", "kernel": "boot/vmlinuz"}


def _config(*shares: dict[str, object]) -> VMConfig:
    return from_dict({"name": "example", "arch": "x86_64", "boot": LINUX, "shares": list(shares)})


@pytest.mark.parametrize(
    ("spec", "tag", "read_only", "mode"),
    [
        ("/srv/src", "src", False, "auto"),
        ("/srv/src:code", "code", False, "auto"),
        ("/srv/src:code:ro", "code", True, "auto"),
        ("/srv/src:code:ro:9p", "code", True, "9p"),
        ("/srv/src:code:9p:ro", "code", True, "9p"),
        ("/srv/src:virtiofs", "src", False, "virtiofs"),
    ],
)
def test_share_specs(spec: str, tag: str, read_only: bool, mode: str) -> None:
    assert specs.share(spec) == {
        "tag": tag,
        "path": "/srv/src",
        "read_only": read_only,
        "mode": mode,
    }


def test_a_share_spec_with_too_many_parts_says_how_to_write_it() -> None:
    with pytest.raises(VMDeskError) as err:
        specs.share("/srv:a:b")
    assert "PATH[:TAG][:ro][:virtiofs|9p]" in str(err.value.hint)


def test_auto_picks_virtiofs_when_virtiofsd_exists_else_9p(tmp_path: Path) -> None:
    config = _config({"tag": "a", "path": str(tmp_path)}, {"tag": "b", "path": "/", "mode": "9p"})
    daemon = Path("/usr/lib/qemu/virtiofsd")
    assert launch.share_mode(config, config.shares[0], daemon) == "virtiofs"
    assert launch.share_mode(config, config.shares[0], None) == "9p"
    assert launch.share_mode(config, config.shares[1], daemon) == "9p"


def test_a_virtiofs_share_without_virtiofsd_says_what_to_install_or_use(tmp_path: Path) -> None:
    config = _config({"tag": "a", "path": str(tmp_path), "mode": "virtiofs"})
    with pytest.raises(HostToolMissing) as err:
        launch.share_mode(config, config.shares[0], None)
    assert "virtiofsd" in err.value.message
    assert "apt-get install" in str(err.value.hint) and f"{tmp_path}:a:9p" in str(err.value.hint)


def test_a_share_folder_that_went_away_is_a_clear_error(tmp_path: Path) -> None:
    config = _config({"tag": "gone", "path": str(tmp_path / "gone")})
    with pytest.raises(NotFound) as err:
        launch.share_mode(config, config.shares[0], None)
    assert "not a folder" in err.value.message and "--remove-share gone" in str(err.value.hint)


def test_virtiofsd_serves_where_a_symlinked_share_resolves(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "logs").mkdir()
    config = _config({"tag": "s", "path": str(tmp_path / "link")})
    helper = launch.virtiofsd_helper(Layout(tmp_path), Path("/v"), 0, config.shares[0])
    assert f"source={tmp_path / 'real'}" in helper["argv"]


def test_virtiofsd_argv_enforces_read_only_on_the_host(tmp_path: Path) -> None:
    config = _config({"tag": "docs", "path": "/srv/docs", "read_only": True})
    (tmp_path / "logs").mkdir()
    helper = launch.virtiofsd_helper(Layout(tmp_path), Path("/bin/virtiofsd"), 0, config.shares[0])
    argv = helper["argv"]
    assert argv[0].endswith("unshare") and "--mount" in argv
    assert "mount --bind -o ro" in argv[argv.index("-c") + 1]
    assert argv[argv.index("/bin/virtiofsd") - 1] == "/srv/docs"  # $0 of the mount script
    assert "--fd=3" in argv and "source=/srv/docs" in argv
    assert helper["socket"] == "listen" and helper["engine_fd"] == spawn.SHARE_FD
    if os.geteuid() != 0:
        assert "--map-root-user" in argv


def test_a_virtiofs_share_needs_its_daemon_socket() -> None:
    config = _config({"tag": "a", "path": "/srv/a", "mode": "virtiofs"})
    with pytest.raises(EngineError, match="no virtiofsd was started"):
        build_vm(config, BUNDLE, Runtime("tcg", 3, 4, None))
    with pytest.raises(EngineError, match="unknown shares"):
        build_vm(config, BUNDLE, Runtime("tcg", 3, 4, None, virtiofs_fds={"a": 6, "zz": 7}))


def test_a_listening_helper_accepts_the_connection_qemu_already_has(tmp_path: Path) -> None:
    """What virtiofsd gets: a listening socket at fd 3 whose first client is QEMU's end."""
    server = (
        "import socket; s = socket.socket(fileno=3); c, _ = s.accept(); "
        "c.sendall(c.recv(5).upper())"
    )
    client = (
        "import socket, sys; s = socket.socket(fileno=6); s.sendall(b'hello'); "
        "sys.stdout.write(s.recv(5).decode())"
    )
    spec = {
        "argv": [sys.executable, "-c", client],
        "listen": {},
        "rotate": [],
        "remove": [],
        "log": str(tmp_path / "engine.log"),
        "helpers": [{"argv": [sys.executable, "-c", server], "log": str(tmp_path / "helper.log"),
                     "engine_fd": 6, "socket": "listen"}],
    }  # fmt: skip
    spawned = spawn.spawn(spec)
    assert spawned.qemu.wait(timeout=30) == 0
    assert spawned.helpers[0].wait(timeout=30) == 0
    assert (tmp_path / "engine.log").read_text().endswith("HELLO")


def test_a_listening_helper_socket_has_no_file() -> None:
    engine_end, helper_end = spawn._helper_sockets("listen")
    with engine_end, helper_end:
        assert helper_end.getsockname().startswith(b"\0")  # abstract: nothing on disk
        assert engine_end.getpeername() == helper_end.getsockname()
