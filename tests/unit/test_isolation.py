"""The isolation policy: each way out of an isolated VM is refused, allowed when unrestricted."""

from __future__ import annotations

import ast
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vmdesk.core import isolation
from vmdesk.core.config import VMConfig, from_dict
from vmdesk.core.errors import PolicyViolation


def make(**fields: Any) -> VMConfig:
    return from_dict({"name": "box", **fields})


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "box.vmdesk"
    (path / "disks").mkdir(parents=True)
    return path


@pytest.fixture
def approved(tmp_path: Path) -> Path:
    path = tmp_path / "approved"
    path.mkdir()
    return path


# Each escape builds (config fields, the field that must be named) from tmp_path.
Escape = Callable[[Path], tuple[dict[str, Any], str]]


def _bridged(tmp: Path) -> tuple[dict[str, Any], str]:
    return {"nics": [{"mode": "nat"}, {"mode": "bridged", "bridge": "br0"}]}, "nics[1].mode"


def _usb(tmp: Path) -> tuple[dict[str, Any], str]:
    return {"usb_devices": [{"vendor_id": "046d", "product_id": "c52b"}]}, "usb_devices[0]"


def _raw_device(tmp: Path) -> tuple[dict[str, Any], str]:
    # Approved explicitly, so only the raw-device rule can fire.
    disks = [{"file": "/dev/null", "format": "raw"}]
    return {"disks": disks, "approved_paths": ["/dev/null"]}, "disks[0].file"


def _raw_cdrom(tmp: Path) -> tuple[dict[str, Any], str]:
    return {"cdroms": [{"file": "/dev/null"}], "approved_paths": ["/dev"]}, "cdroms[0].file"


def _dotdot(tmp: Path) -> tuple[dict[str, Any], str]:
    approved = tmp / "approved"
    disks = [{"file": "images/root.qcow2"}, {"file": f"{approved}/../../etc/passwd"}]
    return {"disks": disks, "approved_paths": [str(approved)]}, "disks[1].file"


def _dotdot_from_bundle(tmp: Path) -> tuple[dict[str, Any], str]:
    return {"disks": [{"file": "disks/../../other.vmdesk/root.qcow2"}]}, "disks[0].file"


def _symlink_out(tmp: Path) -> tuple[dict[str, Any], str]:
    approved = tmp / "approved"
    (tmp / "outside").mkdir()
    (tmp / "outside" / "secret.img").write_bytes(b"")
    (approved / "innocent.img").symlink_to(tmp / "outside" / "secret.img")
    disks = [{"file": str(approved / "innocent.img")}]
    return {"disks": disks, "approved_paths": [str(approved)]}, "disks[0].file"


def _symlink_out_of_bundle(tmp: Path) -> tuple[dict[str, Any], str]:
    (tmp / "outside").mkdir()
    (tmp / "box.vmdesk" / "disks" / "root.qcow2").symlink_to(tmp / "outside" / "root.qcow2")
    return {"disks": [{"file": "disks/root.qcow2"}]}, "disks[0].file"


def _unapproved_disk(tmp: Path) -> tuple[dict[str, Any], str]:
    return {"disks": [{"file": str(tmp / "elsewhere" / "root.qcow2")}]}, "disks[0].file"


def _unapproved_cdrom(tmp: Path) -> tuple[dict[str, Any], str]:
    return {"cdroms": [{"file": str(tmp / "installer.iso")}]}, "cdroms[0].file"


def _unapproved_share(tmp: Path) -> tuple[dict[str, Any], str]:
    shares = [{"tag": "ok", "path": str(tmp / "approved")}, {"tag": "src", "path": str(tmp)}]
    return {"shares": shares, "approved_paths": [str(tmp / "approved")]}, "shares[1].path"


def _kernel_outside(tmp: Path) -> tuple[dict[str, Any], str]:
    return {"boot": {"kind": "linux", "kernel": str(tmp / "vmlinuz")}}, "boot.kernel"


def _initrd_outside(tmp: Path) -> tuple[dict[str, Any], str]:
    boot = {"kind": "linux", "kernel": "vmlinuz", "initrd": "/boot/../boot/initrd.img"}
    return {"boot": boot}, "boot.initrd"


ESCAPES: dict[str, Escape] = {
    "bridged-nic": _bridged,
    "usb-device": _usb,
    "raw-device-disk": _raw_device,
    "raw-device-cdrom": _raw_cdrom,
    "dotdot-out-of-approved": _dotdot,
    "dotdot-out-of-bundle": _dotdot_from_bundle,
    "symlink-out-of-approved": _symlink_out,
    "symlink-out-of-bundle": _symlink_out_of_bundle,
    "unapproved-absolute-disk": _unapproved_disk,
    "unapproved-cdrom": _unapproved_cdrom,
    "unapproved-share": _unapproved_share,
    "linux-kernel-outside": _kernel_outside,
    "linux-initrd-outside": _initrd_outside,
}


@pytest.mark.parametrize("escape", ESCAPES.values(), ids=ESCAPES.keys())
def test_escape_is_refused_when_isolated_and_allowed_when_unrestricted(
    escape: Escape, tmp_path: Path, bundle: Path, approved: Path
) -> None:
    fields, field = escape(tmp_path)
    config = make(**fields)
    assert config.isolation == "isolated"  # the default

    found = isolation.problems(config, bundle)
    assert [p.field for p in found] == [field]
    assert found[0].message and found[0].hint
    with pytest.raises(PolicyViolation) as caught:
        isolation.enforce(config, bundle)
    assert caught.value.exit_code == 6
    assert field in caught.value.message

    config.isolation = "unrestricted"
    assert isolation.problems(config, bundle) == []
    isolation.enforce(config, bundle)


def test_raw_device_is_named_as_such_even_when_approved(bundle: Path) -> None:
    config = make(disks=[{"file": "/dev/null", "format": "raw"}], approved_paths=["/dev/null"])
    (problem,) = isolation.problems(config, bundle)
    assert "raw host device" in problem.message
    assert "image file" in problem.hint


def test_outside_path_message_says_what_it_resolves_to(tmp_path: Path, bundle: Path) -> None:
    config = make(disks=[{"file": "disks/../../root.qcow2"}])
    (problem,) = isolation.problems(config, bundle)
    assert "outside" in problem.message
    assert "paths you added to this VM" in problem.message
    assert os.path.realpath(tmp_path / "root.qcow2") in problem.message
    assert "--isolation unrestricted" in problem.hint


def test_disk_inside_bundle_is_allowed(bundle: Path) -> None:
    # Relative to the bundle, and need not exist yet (created later by the storage layer).
    config = make(disks=[{"file": "disks/root.qcow2"}], cdroms=[{"file": "seed.iso"}])
    assert isolation.problems(config, bundle) == []
    isolation.enforce(config, bundle)


def test_linux_boot_from_bundle_is_allowed(bundle: Path) -> None:
    config = make(boot={"kind": "linux", "kernel": "vmlinuz", "initrd": "initrd.img"})
    assert isolation.problems(config, bundle) == []


def test_approved_dirs_and_files_inside_them_are_allowed(tmp_path: Path, bundle: Path) -> None:
    shared = tmp_path / "projects"
    isos = tmp_path / "isos"
    for path in (shared, isos / "sub"):
        path.mkdir(parents=True)
    kernel = tmp_path / "kernels" / "vmlinuz"  # approved as a single file
    config = make(
        disks=[{"file": str(isos / "sub" / "extra.qcow2")}],
        cdroms=[{"file": str(isos / "installer.iso")}],
        shares=[{"tag": "src", "path": str(shared)}, {"tag": "deep", "path": str(shared / "a")}],
        boot={"kind": "linux", "kernel": str(kernel), "initrd": str(isos / "initrd.img")},
        approved_paths=[str(shared), str(isos), str(kernel)],
    )
    assert isolation.problems(config, bundle) == []
    isolation.enforce(config, bundle)


def test_approved_sibling_with_common_prefix_is_not_inside(tmp_path: Path, bundle: Path) -> None:
    # is_relative_to compares whole components: /x/approved does not cover /x/approved-not.
    approved = tmp_path / "approved"
    config = make(
        disks=[{"file": str(tmp_path / "approved-not" / "d.qcow2")}],
        approved_paths=[str(approved)],
    )
    assert [p.field for p in isolation.problems(config, bundle)] == ["disks[0].file"]


def test_approved_path_through_a_symlink_covers_its_target(tmp_path: Path, bundle: Path) -> None:
    # A hand-edited approved entry that is a symlink is resolved before comparing.
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    config = make(disks=[{"file": str(real / "d.qcow2")}], approved_paths=[str(tmp_path / "alias")])
    assert isolation.problems(config, bundle) == []


def test_enforce_lists_every_problem_and_says_how_to_fix(tmp_path: Path, bundle: Path) -> None:
    config = make(
        nics=[{"mode": "bridged", "bridge": "br0"}],
        usb_devices=[{"vendor_id": "046d", "product_id": "c52b"}],
        shares=[{"tag": "src", "path": str(tmp_path)}],
    )
    with pytest.raises(PolicyViolation) as caught:
        isolation.enforce(config, bundle)
    error = caught.value
    for field in ("nics[0].mode", "usb_devices[0]", "shares[0].path"):
        assert field in error.message
        assert error.hint is not None and field in error.hint
    assert "3 things" in error.message
    assert error.hint is not None and "vmdesk edit box --isolation unrestricted" in error.hint


def test_enforce_passes_a_clean_isolated_vm(bundle: Path) -> None:
    isolation.enforce(make(), bundle)


def test_resolve_semantics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    real = Path(os.path.realpath(tmp_path))
    assert isolation.resolve("disks/a.qcow2", tmp_path) == real / "disks" / "a.qcow2"
    assert isolation.resolve("a/../../b", tmp_path) == real.parent / "b"
    assert isolation.resolve("/etc/../x", tmp_path) == Path(os.path.realpath("/x"))
    assert isolation.resolve("~/isos/a.iso", tmp_path) == real / "home" / "isos" / "a.iso"
    (tmp_path / "link").symlink_to(tmp_path / "target")  # dangling still resolves
    assert isolation.resolve("link/x", tmp_path) == real / "target" / "x"
    assert isolation.resolve("rel", tmp_path).is_absolute()


def test_approve_stores_the_resolved_path_once(tmp_path: Path) -> None:
    (tmp_path / "isos").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "isos")
    config = make()
    isolation.approve(config, tmp_path / "isos" / ".." / "isos" / "a.iso")
    isolation.approve(config, str(tmp_path / "alias" / "a.iso"))
    isolation.approve(config, tmp_path / "isos" / "a.iso")
    assert config.approved_paths == [os.path.realpath(tmp_path / "isos" / "a.iso")]


def test_approve_resolves_relative_paths_against_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = make()
    isolation.approve(config, "debian.iso")
    assert config.approved_paths == [os.path.realpath(tmp_path / "debian.iso")]


def test_approve_then_enforce_allows_the_named_path(tmp_path: Path, bundle: Path) -> None:
    iso = tmp_path / "downloads" / "debian.iso"
    config = make(cdroms=[{"file": str(iso)}])
    with pytest.raises(PolicyViolation):
        isolation.enforce(config, bundle)
    isolation.approve(config, iso)
    isolation.enforce(config, bundle)


def test_policy_module_does_not_depend_on_engines() -> None:
    tree = ast.parse(Path(isolation.__file__).read_text())
    imported = [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    assert not [name for name in imported if name.startswith("vmdesk.engines")]


# -- what the files hold: backing chains and second names ------------------------------------


def _overlay(path: Path, backing: Path) -> None:
    import subprocess

    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(backing), "-F", "raw",
                    str(path)], check=True)  # fmt: skip


def test_a_disk_standing_on_a_file_outside_is_refused_and_the_librarys_bases_are_not(
    tmp_path: Path, bundle: Path
) -> None:
    from vmdesk.storage import qcow2_header

    outside = tmp_path / "secret.raw"
    outside.write_bytes(b"\0" * 4096)
    bases = tmp_path / ".bases" / "images"
    bases.mkdir(parents=True)
    (bases / "base.raw").write_bytes(b"\0" * 4096)
    _overlay(bundle / "disks/evil.qcow2", outside)
    _overlay(bundle / "disks/linked.qcow2", bases / "base.raw")
    config = make(disks=[{"file": "disks/evil.qcow2"}, {"file": "disks/linked.qcow2"}])
    found = isolation.problems(config, bundle, qcow2_header.backing_chain)
    assert [p.field for p in found] == ["disks[0].file"]
    assert "overlay on" in found[0].message and str(outside) in found[0].message
    assert "disk convert" in found[0].hint
    assert isolation.problems(config, bundle) == []  # no reader given: not judged
    unknown = isolation.problems(config, bundle, lambda _: None)
    assert {p.field for p in unknown} == {"disks[0].file", "disks[1].file"}
    assert all("cannot be read" in p.message for p in unknown)


def test_a_second_name_of_a_file_in_the_bundle_is_refused_unless_approved(
    tmp_path: Path, bundle: Path
) -> None:
    elsewhere = tmp_path / "elsewhere.raw"
    elsewhere.write_bytes(b"\0" * 4096)
    os.link(elsewhere, bundle / "disks/linked.raw")
    config = make(disks=[{"file": "disks/linked.raw", "format": "raw"}])
    [problem] = isolation.problems(config, bundle)
    assert "hard link" in problem.message and problem.field == "disks[0].file"
    approved = make(disks=[{"file": "disks/linked.raw", "format": "raw"}],
                    approved_paths=[str(bundle / "disks/linked.raw")])  # fmt: skip
    assert isolation.problems(approved, bundle) == []
    unrestricted = make(disks=[{"file": "disks/linked.raw", "format": "raw"}],
                        isolation="unrestricted")  # fmt: skip
    assert isolation.problems(unrestricted, bundle) == []
