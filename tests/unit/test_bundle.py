"""Bundles on disk: atomic config writes, one owner at a time, damaged files left alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vmdesk.core import config as vmconfig
from vmdesk.core.bundle import Bundle
from vmdesk.core.errors import BundleError, ConfigError, Conflict, NotFound


def _bundle(tmp_path: Path, name: str = "vm") -> Bundle:
    return Bundle.create(tmp_path / f"{name}.vmdesk", vmconfig.from_dict({"name": name}))


def test_create_lays_out_the_bundle(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    for sub in ("disks", "nvram", "tpm", "snapshots", "logs", "run"):
        assert (bundle.path / sub).is_dir()
    assert bundle.load().name == "vm"
    assert not list(bundle.path.glob(".config.json.*"))  # no temp files left behind


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from vmdesk.core import config as vmconfig
    from vmdesk.core.bundle import Bundle
    bundle = Bundle(Path(sys.argv[1]))
    cpus = 1
    print("go", flush=True)
    while True:  # rewrite as fast as possible until killed
        cpus = cpus % 2 + 1
        # a long kernel path makes each write big enough to be killed halfway through
        big = {"name": "vm", "cpus": cpus, "boot": {"kind": "linux", "kernel": "k" * 20000}}
        bundle.save(vmconfig.from_dict(big))
    """
)


def test_write_killed_at_any_moment_leaves_a_whole_config(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    for round_ in range(25):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(bundle.path)], stdout=subprocess.PIPE
        )
        assert proc.stdout is not None and proc.stdout.readline() == b"go\n"
        time.sleep(0.005 * (round_ % 7))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        config = bundle.load()  # old or new, never half
        assert config.cpus in (1, 2)
    leftovers = list(bundle.path.glob(".config.json.*.tmp"))
    assert len(leftovers) <= 25  # a killed writer may leave its temp file, never a torn config


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from vmdesk.core.bundle import Bundle
    with Bundle(Path(sys.argv[1])).lock("running the VM"):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_only_one_process_owns_a_bundle(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(bundle.path)], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        assert bundle.is_locked()
        with pytest.raises(Conflict) as err, bundle.lock("editing"):
            pass
        assert "in use" in err.value.message
        assert f"pid {holder.pid}: running the VM" in err.value.message
        assert err.value.hint
    finally:
        holder.kill()
        holder.wait()
    assert not bundle.is_locked()  # the lock dies with its owner
    with bundle.lock("editing"):
        assert bundle.is_locked()


def test_corrupt_config_is_reported_and_not_touched(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    bundle.files.config.write_text('{"name": "vm", "cpus": ')
    before = bundle.files.config.read_bytes()
    with pytest.raises(ConfigError) as err:
        bundle.load()
    assert str(bundle.files.config) in err.value.message
    assert "not valid JSON" in err.value.message
    assert bundle.files.config.read_bytes() == before


def test_newer_schema_is_refused_and_not_touched(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    data = json.loads(bundle.files.config.read_text())
    data["schema_version"] = 7
    bundle.files.config.write_text(json.dumps(data))
    before = bundle.files.config.read_bytes()
    with pytest.raises(ConfigError) as err:
        bundle.load()
    assert "newer VM-Desk" in err.value.message
    assert "upgrade VM-Desk" in (err.value.hint or "")
    assert bundle.files.config.read_bytes() == before


def test_missing_bundle_and_non_bundle(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        Bundle(tmp_path / "nope.vmdesk").load()
    (tmp_path / "empty.vmdesk").mkdir()
    with pytest.raises(BundleError, match="not a VM-Desk bundle"):
        Bundle(tmp_path / "empty.vmdesk").load()


def test_relative_paths_survive_a_move(tmp_path: Path) -> None:
    config = vmconfig.from_dict({"name": "vm", "disks": [{"file": "disks/root.qcow2"}]})
    bundle = Bundle.create(tmp_path / "vm.vmdesk", config)
    (bundle.files.disks / "root.qcow2").write_bytes(b"disk")
    moved = tmp_path / "elsewhere" / "vm.vmdesk"
    moved.parent.mkdir()
    os.rename(bundle.path, moved)
    loaded = Bundle(moved).load()
    assert (moved / loaded.disks[0].file).read_bytes() == b"disk"
