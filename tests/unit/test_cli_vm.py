"""Every VM library command through the real `vmdesk` entry point, JSON output parsed back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


class Run:
    def __init__(self, home: Path) -> None:
        self.env = {**os.environ, "VMDESK_HOME": str(home), "COLUMNS": "200"}

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "vmdesk.cli.main", *args],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, env=self.env, timeout=60,
        )  # fmt: skip
        if ok:
            assert done.returncode == 0, f"{args}: {done.stderr}"
        else:
            assert done.returncode != 0, f"{args} should have failed: {done.stdout}"
            assert "Traceback" not in done.stderr
            assert "hint:" in done.stderr or "Usage:" in done.stderr
        return done


@pytest.fixture
def vmdesk(tmp_path: Path) -> Run:
    return Run(tmp_path / "library")


def test_create_list_show_json(vmdesk: Run, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    out = vmdesk(
        "create", "dev", "--arch", "x86_64", "--cpus", "1", "--memory", "1GiB",
        "--forward", "tcp:8080:80", "--share", f"{src}:src", "--resolution", "1920x1080",
        "--tpm", "--boot", "uefi", "--secure-boot",
    ).stdout  # fmt: skip
    assert "created VM dev" in out
    rows = json.loads(vmdesk("list", "--json").stdout)
    assert [(r["name"], r["status"], r["arch"], r["memory"]) for r in rows] == [
        ("dev", "stopped", "x86_64", "1GiB")
    ]
    table = vmdesk("list").stdout
    assert table.splitlines()[0].split() == [
        "NAME", "STATUS", "ARCH", "CPUS", "MEMORY", "ENGINE", "ISOLATION", "OS"
    ]  # fmt: skip
    shown = json.loads(vmdesk("show", "dev", "--json").stdout)
    config = shown["config"]
    assert shown["status"] == "stopped"
    assert config["display"]["width"] == 1920 and config["tpm"] is True
    assert config["boot"] == {"kind": "uefi", "secure_boot": True}
    assert config["nics"][0]["forwards"][0]["host_port"] == 8080
    share = {"tag": "src", "path": str(src), "read_only": False, "mode": "auto"}
    assert config["shares"] == [share]
    assert str(src) in config["approved_paths"]  # named on the command line => approved
    assert "dev" in vmdesk("show", "dev").stdout
    assert "dev" in vmdesk("show", config["uuid"][:8]).stdout


def test_create_from_json_and_yaml_files(vmdesk: Run, tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"name": "ignored", "cpus": 1, "memory": "512M"}))
    (tmp_path / "b.yaml").write_text("cpus: 1\nmemory: 768MiB\narch: x86_64\nboot:\n  kind: bios\n")
    vmdesk("create", "a", "--from-file", str(tmp_path / "a.json"))
    vmdesk("create", "b", "--from-file", str(tmp_path / "b.yaml"), "--memory", "1G")
    rows = {r["name"]: r for r in json.loads(vmdesk("list", "--json").stdout)}
    assert rows["a"]["memory"] == "512MiB"
    assert rows["b"]["memory"] == "1GiB"  # flags override the file
    (tmp_path / "bad.yaml").write_text("cpus: [unclosed\n")
    err = vmdesk("create", "c", "--from-file", str(tmp_path / "bad.yaml"), ok=False).stderr
    assert "cannot parse" in err


def test_validation_errors_name_fields_and_exit_nonzero(vmdesk: Run) -> None:
    done = vmdesk("create", "x", "--memory", "10M", "--mac", "nope", "--cpus", "1", ok=False)
    assert done.returncode == 2
    assert "memory" in done.stderr and "nics[0].mac" in done.stderr
    done = vmdesk(
        "create", "y", "--arch", "x86_64", "--boot", "bios", "--secure-boot", "--cpus", "1",
        ok=False,
    )  # fmt: skip
    assert "secure boot needs UEFI" in done.stderr
    done = vmdesk("create", "z", "--forward", "tcp:nope", "--cpus", "1", ok=False)
    assert "is not a port forward" in done.stderr
    assert json.loads(vmdesk("list", "--json").stdout) == []


def test_edit_rename_delete(vmdesk: Run, tmp_path: Path) -> None:
    vmdesk("create", "dev", "--cpus", "1", "--forward", "2222:22")
    share = tmp_path / "docs"
    share.mkdir()
    vmdesk(
        "edit", "dev", "--memory", "4GiB", "--resolution", "1024x768", "--share", f"{share}:docs",
        "--forward", "udp:5353:53", "--remove-forward", "2222", "--usb", "046d:c52b",
    )  # fmt: skip
    config = json.loads(vmdesk("show", "dev", "--json").stdout)["config"]
    assert config["memory"] == "4GiB"
    assert (config["display"]["width"], config["display"]["height"]) == (1024, 768)
    assert [f["host_port"] for f in config["nics"][0]["forwards"]] == [5353]
    assert config["shares"][0]["tag"] == "docs"
    assert config["usb_devices"] == [{"vendor_id": "046d", "product_id": "c52b"}]
    assert config["isolation"] == "isolated"
    vmdesk("edit", "dev", "--isolation", "unrestricted", "--remove-share", "docs")
    config = json.loads(vmdesk("show", "dev", "--json").stdout)["config"]
    assert config["isolation"] == "unrestricted" and config["shares"] == []
    err = vmdesk("edit", "dev", "--memory", "1M", ok=False).stderr
    assert "below the minimum" in err
    assert json.loads(vmdesk("show", "dev", "--json").stdout)["config"]["memory"] == "4GiB"

    vmdesk("rename", "dev", "prod")
    assert [r["name"] for r in json.loads(vmdesk("list", "--json").stdout)] == ["prod"]
    err = vmdesk("delete", "prod", ok=False).stderr  # no tty: must not delete silently
    assert "--yes" in err
    vmdesk("delete", "prod", "--yes")
    assert json.loads(vmdesk("list", "--json").stdout) == []
    err = vmdesk("show", "prod", ok=False)
    assert err.returncode == 4 and "no VM named 'prod'" in err.stderr


def test_export_import(vmdesk: Run, tmp_path: Path) -> None:
    vmdesk("create", "dev", "--cpus", "1")
    out = tmp_path / "exports"
    out.mkdir()
    assert "exported dev" in vmdesk("export", "dev", str(out)).stdout
    assert (out / "dev.vmdesk" / "config.json").is_file()
    err = vmdesk("import", str(out / "dev.vmdesk"), ok=False)
    assert err.returncode == 5 and "--name" in err.stderr
    vmdesk("import", str(out / "dev.vmdesk"), "--name", "dev2")
    names = [r["name"] for r in json.loads(vmdesk("list", "--json").stdout)]
    assert names == ["dev", "dev2"]


def test_schema_is_json_schema(vmdesk: Run) -> None:
    schema = json.loads(vmdesk("schema").stdout)
    assert schema["type"] == "object"
    assert "memory" in schema["properties"]


def test_list_on_an_empty_library(vmdesk: Run) -> None:
    assert "no VMs yet" in vmdesk("list").stdout
    assert json.loads(vmdesk("list", "--json").stdout) == []


def test_a_nat_nic_names_its_backend(vmdesk: Run) -> None:
    vmdesk("create", "a", "--nic", "nat:slirp", "--forward", "tcp:2222:22")
    vmdesk("create", "b", "--nic", "nat")
    [a] = json.loads(vmdesk("show", "a", "--json").stdout)["config"]["nics"]
    [b] = json.loads(vmdesk("show", "b", "--json").stdout)["config"]["nics"]
    assert (a["backend"], a["forwards"][0]["host_port"], b["backend"]) == ("slirp", 2222, "auto")
    vmdesk("edit", "b", "--nic", "nat:passt")
    assert json.loads(vmdesk("show", "b", "--json").stdout)["config"]["nics"][0]["backend"] == (
        "passt")  # fmt: skip
    bad = vmdesk("create", "c", "--nic", "nat:vde", ok=False)
    assert "'vde' is not a NAT backend" in bad.stderr and "nat:slirp" in bad.stderr


def test_broken_bundle_shows_in_list(vmdesk: Run) -> None:
    vmdesk("create", "dev", "--cpus", "1")
    cfg = Path(vmdesk.env["VMDESK_HOME"]) / "dev.vmdesk" / "config.json"
    cfg.write_text("{")
    rows = json.loads(vmdesk("list", "--json").stdout)
    assert rows[0]["status"] == "broken" and "config.json" in rows[0]["error"]
    err = vmdesk("show", "dev", ok=False).stderr
    assert "not valid JSON" in err
    assert cfg.read_text() == "{"


def test_doctor_table_and_json(vmdesk: Run) -> None:
    checks = json.loads(vmdesk("doctor", "--json").stdout)
    names = {c["name"] for c in checks}
    assert {"qemu-system-x86_64", "qemu-system-aarch64", "qemu-img", "free disk"} <= names
    accel = next(c for c in checks if c["name"].startswith("accelerator"))
    assert accel["detail"].split(":")[0] in ("kvm", "tcg")
    table = vmdesk("doctor", "--no-probe").stdout
    assert "qemu-system-aarch64" in table and "this host can run VMs" in table


def test_create_with_a_new_disk_of_any_size(vmdesk: Run, tmp_path: Path) -> None:
    """`--disk-size` gives a new VM its own sparse qcow2 disk, made with it or not at all."""
    vmdesk("create", "big", "--disk-size", "64GiB", "--cpus", "1")
    (disk,) = json.loads(vmdesk("disk", "list", "big", "--json").stdout)
    assert (disk["file"], disk["format"], disk["image"]["virtual_size"]) == (
        "disks/disk0.qcow2", "qcow2", 64 << 30)  # fmt: skip
    assert disk["image"]["allocated"] < 1 << 20  # sparse: nothing written yet
    failed = vmdesk("create", "none", "--disk-size", "0", ok=False)
    assert "size above zero" in failed.stderr
    assert not (tmp_path / "library" / "none.vmdesk").exists()
