"""NAT NICs on passt where it is installed, on QEMU's slirp otherwise: passt's command line,
the choice, and what a launch spec says about it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from vmdesk.core.config import Nic, PortForward, VMConfig, from_dict
from vmdesk.core.errors import HostToolMissing
from vmdesk.core.layout import Layout, Sockets
from vmdesk.engines.qemu import spawn
from vmdesk.engines.qemu.launch import launch_spec, nat_choices
from vmdesk.networking import passt

FORWARDS = [
    PortForward(protocol="tcp", host_port=2222, guest_port=22),
    PortForward(protocol="udp", host_address="0.0.0.0", host_port=5353, guest_port=53),
    PortForward(protocol="tcp", host_address="::1", host_port=8443, guest_port=443),
]
SLIRP_LIKE = ["--address", "10.0.2.15", "--netmask", "24", "--gateway", "10.0.2.2"]


def test_argv_on_an_inherited_socket_with_tcp_and_udp_forwards() -> None:
    got = passt.argv("/usr/bin/passt", FORWARDS, fd=3)
    assert got == [
        "/usr/bin/passt", "--foreground", "--quiet", "--fd", "3", *SLIRP_LIKE,
        "-t", "127.0.0.1/2222:22",  # this machine only, as the forward says by default
        "-u", "0.0.0.0/5353:53",  # every IPv4 interface: asked for
        "-t", "::1/8443:443",  # slirp on QEMU 7.2 cannot; passt can
    ]  # fmt: skip


def test_argv_on_a_socket_path_with_a_pid_file_and_no_forwards() -> None:
    got = passt.argv(Path("/usr/bin/passt"), [], socket=Path("/vm/run/passt.sock"),
                     pid_file=Path("/vm/run/passt.pid"), quiet=False)  # fmt: skip
    assert got == ["/usr/bin/passt", "--foreground", "--socket", "/vm/run/passt.sock",
                   "--pid", "/vm/run/passt.pid", *SLIRP_LIKE]  # fmt: skip


@pytest.mark.parametrize("where", [{}, {"fd": 3, "socket": Path("/s")}])
def test_argv_needs_exactly_one_way_to_qemu(where: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        passt.argv("passt", [], **where)


def test_forward_spec_normalises_the_address() -> None:
    fwd = PortForward(protocol="udp", host_address="::0001", host_port=1, guest_port=2)
    assert passt.forward_spec(fwd) == "::1/1:2"


def test_auto_takes_passt_where_it_is_and_slirp_where_it_is_not() -> None:
    found = Path("/usr/bin/passt")
    chosen = passt.choose(0, Nic(), found)
    assert (chosen.backend, chosen.binary) == ("passt", found)
    assert str(found) in chosen.reason
    fallback = passt.choose(0, Nic(), None)
    assert (fallback.backend, fallback.binary) == ("slirp", None)
    assert "apt-get install passt" in fallback.reason
    assert passt.choose(0, Nic(backend="slirp"), found).backend == "slirp"  # asked for
    assert passt.choose(0, Nic(backend="passt"), found).backend == "passt"


def test_auto_under_emulation_is_slirp_unless_passt_is_asked_for() -> None:
    found = Path("/usr/bin/passt")
    emulated = passt.choose(0, Nic(), found, emulated=True)
    assert emulated.backend == "slirp" and "bench P22" in emulated.reason
    assert "--nic nat:passt" in emulated.reason
    assert passt.choose(0, Nic(backend="passt"), found, emulated=True).backend == "passt"
    assert "apt-get install" in passt.choose(0, Nic(), None, emulated=True).reason


def test_passt_asked_for_and_missing_is_a_one_line_error_with_the_fix() -> None:
    with pytest.raises(HostToolMissing) as err:
        passt.choose(1, Nic(backend="passt"), None, "dev")
    assert "\n" not in err.value.message and "nics[1]" in err.value.message
    assert err.value.hint and "apt-get install passt" in err.value.hint
    assert 'nics[1].backend to "auto" or "slirp" in dev.vmdesk/config.json' in err.value.hint


def test_the_backend_is_part_of_the_description() -> None:
    assert Nic().backend == "auto"
    with pytest.raises(Exception, match="backend"):
        from_dict({"name": "x", "nics": [{"backend": "vde"}]})


def _path_with(tmp_path: Path, *, with_passt: bool) -> str:
    """A PATH holding QEMU (a link to the real one) and, if asked, a stand-in passt."""
    bin_dir = tmp_path / ("with" if with_passt else "without")
    bin_dir.mkdir()
    qemu = shutil.which("qemu-system-x86_64")
    assert qemu is not None
    (bin_dir / "qemu-system-x86_64").symlink_to(qemu)
    if with_passt:
        fake = bin_dir / "passt"
        fake.write_text("#!/bin/sh\nexit 0\n")
        fake.chmod(0o755)
    return str(bin_dir)


def _config(**nic: Any) -> VMConfig:
    forwards = [{"protocol": "tcp", "host_port": 2222, "guest_port": 22},
                {"protocol": "udp", "host_port": 5353, "guest_port": 5353}]  # fmt: skip
    return from_dict({
        "name": "vm", "arch": "x86_64", "display": {"device": "none"},
        "boot": {"kind": "linux", "kernel": "/k"},
        "nics": [{"forwards": forwards, **nic}, {"mode": "none"}],
    })  # fmt: skip


def _spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, config: VMConfig
          ) -> dict[str, Any]:  # fmt: skip
    monkeypatch.setenv("VMDESK_ACCEL", "tcg")
    monkeypatch.setenv("PATH", path)
    files = Layout(tmp_path / "vm.vmdesk")
    files.logs.mkdir(parents=True, exist_ok=True)
    return launch_spec(config, files, Sockets(files.run))


def test_nat_choices_follow_the_path(tmp_path: Path) -> None:
    config = _config()
    with_passt = nat_choices(config, _path_with(tmp_path, with_passt=True))
    assert list(with_passt) == [0]  # the "none" NIC has no backend
    assert with_passt[0].backend == "passt"
    assert nat_choices(config, _path_with(tmp_path, with_passt=False))[0].backend == "slirp"


def test_a_spec_with_passt_starts_it_as_a_helper_paired_with_qemu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _path_with(tmp_path, with_passt=True)
    auto = _spec(tmp_path, monkeypatch, path, _config())  # a TCG guest: slirp, and why
    assert auto["helpers"] == [] and auto["nat"][0]["backend"] == "slirp"
    assert "bench P22" in auto["nat"][0]["reason"]
    spec = _spec(tmp_path, monkeypatch, path, _config(backend="passt"))
    fd = spawn.NAT_FD
    assert f"stream,id=net0,server=off,addr.type=fd,addr.str={fd}" in spec["argv"]
    assert not any(a.startswith("user,") for a in spec["argv"])
    [helper] = spec["helpers"]
    assert helper["argv"][:5] == [f"{path}/passt", "--foreground", "--quiet", "--fd", "3"]
    assert helper["argv"][-4:] == ["-t", "127.0.0.1/2222:22", "-u", "127.0.0.1/5353:5353"]
    assert helper["engine_fd"] == fd and helper.get("socket", "pair") == "pair"
    assert helper["log"] == str(tmp_path / "vm.vmdesk/logs/passt-nic0.log")
    assert spec["nat"] == [{"nic": 0, "backend": "passt", "reason": f"asked for: {path}/passt"}]
    assert f"{path}/passt" in spec["watch"]  # removing it makes the plan stale


def test_a_spec_without_passt_uses_slirp_and_watches_for_passt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _path_with(tmp_path, with_passt=False)
    spec = _spec(tmp_path, monkeypatch, path, _config())
    slirp = "user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp:127.0.0.1:5353-:5353"
    assert slirp in spec["argv"]
    assert spec["helpers"] == []
    [nat] = spec["nat"]
    assert (nat["nic"], nat["backend"]) == (0, "slirp")
    assert os.path.join(path, "passt") in spec["watch"]  # installing it makes the plan stale


def test_slirp_asked_for_is_kept_with_passt_installed_and_passt_asked_for_needs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_passt = _path_with(tmp_path, with_passt=True)
    spec = _spec(tmp_path, monkeypatch, with_passt, _config(backend="slirp"))
    assert spec["helpers"] == [] and spec["nat"][0]["backend"] == "slirp"
    without = _path_with(tmp_path, with_passt=False)
    with pytest.raises(HostToolMissing, match="passt"):
        _spec(tmp_path, monkeypatch, without, _config(backend="passt"))


def test_a_vm_without_nat_neither_looks_for_passt_nor_watches_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = from_dict({"name": "vm", "arch": "x86_64", "display": {"device": "none"},
                        "boot": {"kind": "linux", "kernel": "/k"}, "nics": []})  # fmt: skip
    spec = _spec(tmp_path, monkeypatch, _path_with(tmp_path, with_passt=True), config)
    assert spec["nat"] == [] and not any(w.endswith("/passt") for w in spec["watch"])


def test_doctor_says_what_nat_nics_get_and_how_to_get_passt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vmdesk.engines.qemu import doctor

    monkeypatch.setenv("PATH", _path_with(tmp_path, with_passt=True))
    check = next(c for c in doctor.checks(probe_accel=False) if c.name == "NAT")
    assert check.ok and "get passt" in check.detail and check.severity == "warning"
    monkeypatch.setenv("PATH", _path_with(tmp_path, with_passt=False))
    check = next(c for c in doctor.checks(probe_accel=False) if c.name == "NAT")
    assert not check.ok and "slirp" in check.detail
    assert "apt-get install passt" in check.fix and check.severity == "warning"


def test_show_says_what_a_nat_nic_asks_for_and_ran_on() -> None:
    from vmdesk.cli.vm_commands import _devices

    config = _config().model_dump(mode="json")
    lines = _devices(config, {})
    assert "         NAT passt where installed, else slirp" in lines
    ran = {"0": {"nic": 0, "backend": "slirp", "reason": "passt is not installed (...)"}}
    assert ("         NAT passt where installed, else slirp; last start: slirp (passt is not "
            "installed (...))") in _devices(config, {}, ran)  # fmt: skip
    assert sum(line.lstrip().startswith("NAT") for line in lines) == 1  # not for "none"
