"""The desktop image's recipe without a full build: package resolution against the host's
apt lists, the cache key, the disk's layout (GPT, ESP, ext4) assembled from a small tree
and reproducible to the byte, the cache; and `vmdesk ssh`'s target (the forward, the
seed's user, the ssh command line) and its errors. The whole build and a boot are in
tests/vm/test_desktop.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.unit.test_cli_vm import Run
from vmdesk.core.errors import Conflict, HostToolMissing, ImageBuildError, NotFound
from vmdesk.images import cloud_init, debian, desktop
from vmdesk.service import ssh

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f me@host"
SIMULATION = """\
NOTE: This is only a simulation!
Inst gcc-12-base (12.2.0-14+deb12u1 Debian:12.15/oldstable [amd64])
Inst libc6 [2.36-9] (2.36-9+deb12u14 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [amd64])
Conf libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64])
Inst xpra (3.1.3-0.1 Debian:12.15/oldstable [amd64])
"""  # noqa: E501


def test_simulated_installs_give_each_package_with_its_version() -> None:
    assert desktop.parse_simulation(SIMULATION) == [
        debian.Package("gcc-12-base", "12.2.0-14+deb12u1"),
        debian.Package("libc6", "2.36-9+deb12u14"),
        debian.Package("xpra", "3.1.3-0.1"),
    ]


def test_the_key_changes_with_any_version_and_the_architecture_only() -> None:
    packages = desktop.parse_simulation(SIMULATION)
    key = desktop.recipe_key("x86_64", packages)
    assert desktop.recipe_key("x86_64", list(reversed(packages))) == key  # order is not input
    newer = [*packages[:2], debian.Package("xpra", "3.1.3-0.2")]
    assert desktop.recipe_key("x86_64", newer) != key
    assert desktop.recipe_key("aarch64", packages) != key
    assert len(key) == 16 and desktop.image_ids(key) == desktop.image_ids(key)
    ids = desktop.image_ids(key)
    assert len({ids.disk, ids.esp, ids.root, ids.root_fs}) == 4
    assert len(ids.esp_volume) == 9 and ids.esp_volume[4] == "-"


def _host_has_bookworm() -> bool:
    try:
        desktop.host_sources("x86_64")
    except ImageBuildError:
        return False
    return True


needs_lists = pytest.mark.skipif(
    not shutil.which("apt-get") or not _host_has_bookworm(),
    reason="needs apt with Debian 12 package lists (scripts/setup.sh's hosts have them)",
)


@needs_lists
def test_resolution_reads_the_hosts_lists_and_pins_every_package() -> None:
    sources = desktop.host_sources("x86_64")
    assert any(" bookworm main" in line for line in sources.lines)
    assert all(line.startswith("deb [arch=amd64] ") for line in sources.lines)
    assert any(f.name.endswith("InRelease") for f in sources.files)
    packages = desktop.resolve("x86_64", sources)
    names = {p.name: p.version for p in packages}
    for wanted in (*desktop.PACKAGES, "linux-image-amd64", "grub-efi-amd64-bin", "dpkg", "apt"):
        assert names.get(wanted), wanted
    assert any(n.startswith("linux-image-6.") for n in names)  # the kernel itself
    assert not any(n.endswith(":arm64") for n in names)
    hooks = {"essential": Path("/h/e.sh"), "customize": Path("/h/c.sh")}
    argv = desktop.mmdebstrap_argv("x86_64", sources, packages, Path("/r"), hooks)
    assert "--variant=apt" in argv and "--skip=update" in argv and "--mode=root" in argv
    include = next(a for a in argv if a.startswith("--include="))
    assert include.count("=") == len(packages) + 1  # every package at its version
    assert argv[-len(sources.lines) - 2 :] == ["bookworm", "/r", *sources.lines]
    setup = next(a for a in argv if a.startswith("--setup-hook="))
    assert all(str(f) in setup for f in sources.files)  # the lists resolved from, copied in


def test_an_installation_that_differs_from_the_resolution_is_refused() -> None:
    packages = desktop.parse_simulation(SIMULATION)
    desktop._check_installed(packages, sorted(p.spec for p in packages))
    with pytest.raises(ImageBuildError, match=r"extra: xpra=9; missing: xpra=3.1.3-0.1"):
        desktop._check_installed(packages, sorted([*(p.spec for p in packages[:2]), "xpra=9"]))


def test_the_kernel_release_comes_from_the_one_kernel_in_boot() -> None:
    listing = (
        "System.map-6.1.0-57-amd64\nconfig-6.1.0-57-amd64\nefi\ngrub\nvmlinuz-6.1.0-57-amd64\n"
    )
    assert desktop._kernel_release(listing) == "6.1.0-57-amd64"
    with pytest.raises(ImageBuildError, match="one kernel"):
        desktop._kernel_release("vmlinuz-6.1.0-1-amd64 vmlinuz-6.1.0-2-amd64")


def _tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("debian\n")
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "tool").write_bytes(b"\x7fELF" + bytes(4096))
    (root / "bin").symlink_to("usr/bin")
    (root / "with space").write_text("x")
    return root


def test_clamping_sets_what_the_build_made_and_keeps_the_packages_times(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    old = 1_600_000_000
    os.utime(root / "usr" / "bin" / "tool", (old, old))
    since = os.lstat(root / "etc" / "hostname").st_mtime - 1
    desktop.clamp_times(root, since)
    assert os.stat(root / "usr" / "bin" / "tool").st_mtime == old  # from a package
    assert os.stat(root / "etc" / "hostname").st_mtime == desktop.SOURCE_DATE_EPOCH
    assert os.lstat(root / "bin").st_mtime == desktop.SOURCE_DATE_EPOCH  # the link itself


def _gpt(disk: Path) -> dict[str, object]:
    done = subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True,
                          check=True)  # fmt: skip
    table: dict[str, object] = json.loads(done.stdout)["partitiontable"]
    return table


needs_disk_tools = pytest.mark.skipif(
    not all(shutil.which(t) or Path(f"/usr/sbin/{t}").exists()
            for t in ("sfdisk", "mkfs.ext4", "debugfs", "mformat")),
    reason="needs fdisk, e2fsprogs and mtools (scripts/setup.sh installs them)",
)  # fmt: skip


@needs_disk_tools
def test_the_disk_is_a_gpt_with_the_esp_and_root_and_the_same_tree_gives_the_same_bytes(
    tmp_path: Path,
) -> None:
    root = _tree(tmp_path / "root")
    boot = tmp_path / "boot.efi"
    boot.write_bytes(b"MZ" + bytes(1000))
    ids = desktop.image_ids("0123456789abcdef")
    for later, name in enumerate(("one.raw", "two.raw")):
        # access and change times differ between builds (modification times do not)
        hostname = root / "etc" / "hostname"
        os.utime(hostname, (time.time() + 100 * later, os.stat(hostname).st_mtime))
        desktop.assemble("x86_64", root, boot, tmp_path / name, ids)
    same = subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", "-F", "raw",
                           str(tmp_path / "one.raw"), str(tmp_path / "two.raw")])  # fmt: skip
    assert same.returncode == 0, "the same tree gave other bytes"

    disk = tmp_path / "one.raw"
    assert disk.stat().st_size == desktop.DISK_SIZE
    table = _gpt(disk)
    assert table["label"] == "gpt" and table["id"] == str(ids.disk).upper()
    esp, part = table["partitions"]  # type: ignore[misc]
    assert (esp["type"], esp["uuid"]) == (desktop.ESP_TYPE, str(ids.esp).upper())
    assert part["type"] == desktop.ROOT_TYPE["x86_64"] and part["uuid"] == str(ids.root).upper()
    assert (part["start"] + part["size"]) * 512 == desktop.DISK_SIZE - (1 << 20)
    listing = subprocess.run(["mdir", "-b", "-i", f"{disk}@@1M", "::/EFI/BOOT"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "BOOTX64.EFI" in listing
    fs = f"{disk}?offset={part['start'] * 512}"
    stat = subprocess.run(["debugfs", "-R", "stat /etc/hostname", fs], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    assert stat.count("Wed Jan  1 00:00:00 2025") == 3  # ctime, atime, crtime
    info = subprocess.run(["dumpe2fs", "-h", fs], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    assert str(ids.root_fs) in info and "debian-root" in info


def test_the_cache_finds_the_newest_build_and_says_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMDESK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(NotFound) as missing:
        desktop.find("x86_64")
    assert "vmdesk image build debian-desktop --arch x86_64" in str(missing.value.hint)
    built = _fake_build(tmp_path / "cache", "x86_64")
    assert desktop.find("x86_64").disk == built
    assert desktop.find("x86_64").packages == ("xpra=3.1.3-0.1",)
    with pytest.raises(NotFound):
        desktop.find("aarch64")


def _fake_build(cache: Path, arch: str) -> Path:
    """A cached build as build() leaves it, with a small qcow2 disk."""
    directory = cache / "images" / f"debian-desktop-{arch}-0123456789abcdef"
    directory.mkdir(parents=True)
    disk = directory / f"{directory.name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    manifest = {"name": "debian-desktop", "arch": arch, "disk": disk.name,
                "kernel_release": "6.1.0-57-amd64", "packages": ["xpra=3.1.3-0.1"]}  # fmt: skip
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return disk


@pytest.fixture
def vmdesk(tmp_path: Path) -> Run:
    run = Run(tmp_path / "library")
    run.env["VMDESK_CACHE"] = str(tmp_path / "cache")
    return run


def test_a_vm_from_the_built_image_gets_an_overlay_and_a_seed_and_is_listed(
    vmdesk: Run, tmp_path: Path
) -> None:
    key = tmp_path / "id.pub"
    key.write_text(KEY + "\n")
    refused = vmdesk("create", "d", "--image", "debian-desktop", "--arch", "x86_64", ok=False)
    assert "vmdesk image build debian-desktop --arch x86_64" in refused.stderr
    disk = _fake_build(tmp_path / "cache", "x86_64")
    vmdesk("create", "d", "--image", "debian-desktop", "--arch", "x86_64", "--user", "alice",
           "--ssh-key", str(key), "--forward", "tcp:2299:22", "--disk-size", "8GiB")  # fmt: skip
    shown = json.loads(vmdesk("show", "d", "--json").stdout)["config"]
    assert shown["boot"]["kind"] == "uefi"
    assert [c["file"] for c in shown["cdroms"]] == ["cloud-init/seed.iso"]
    (overlay,) = json.loads(vmdesk("disk", "list", "d", "--json").stdout)
    assert overlay["image"]["virtual_size"] == 8 << 30
    assert disk.name in overlay["image"]["backing_chain"][0]
    bundle = tmp_path / "library" / "d.vmdesk"
    assert ssh.seed_user(bundle, "d") == "alice"
    listed = json.loads(vmdesk("image", "list", "--json").stdout)["built"]
    assert {"name": "debian-desktop", "arch": "x86_64", "disk": str(disk)}.items() <= next(
        row for row in listed if row["name"] == "debian-desktop"
    ).items()

    # `vmdesk ssh` refuses a stopped VM, and one without a forward to its SSH port
    stopped = vmdesk("ssh", "d", "--", "id", ok=False)
    assert stopped.returncode == Conflict.exit_code and "vmdesk start d" in stopped.stderr
    vmdesk("create", "plain", "--forward", "tcp:8080:80")
    unforwarded = vmdesk("ssh", "plain", ok=False)
    assert (
        "no host port to its SSH port" in unforwarded.stderr and "--forward" in unforwarded.stderr
    )


def test_the_ssh_command_line_checks_host_keys_by_the_vms_uuid_in_its_bundle(
    tmp_path: Path,
) -> None:
    login = ssh.Login("web", "1234", "alice", "127.0.0.1", 2222, tmp_path / "known_hosts")
    argv = login.argv(["id", "-u"], identity=tmp_path / "key")
    assert argv[1:] == [
        "-p", "2222",
        "-o", "HostKeyAlias=vmdesk-1234",
        "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=accept-new",
        "-o", "CheckHostIP=no",
        "-i", str(tmp_path / "key"), "-o", "IdentitiesOnly=yes",
        "--", "alice@127.0.0.1", "id", "-u",
    ]  # fmt: skip
    assert Path(argv[0]).name == "ssh"
    assert login.argv()[-1] == "alice@127.0.0.1"  # no command: a login shell


def test_the_forward_to_port_22_is_found_and_a_wildcard_address_means_loopback() -> None:
    def nics(*forwards: dict[str, object]) -> dict[str, object]:
        return {"nics": [{"mode": "nat", "forwards": list(forwards)}]}

    web = {"protocol": "tcp", "host_address": "127.0.0.1", "host_port": 8080, "guest_port": 80}
    udp = {"protocol": "udp", "host_address": "127.0.0.1", "host_port": 2200, "guest_port": 22}
    fwd = {"protocol": "tcp", "host_address": "0.0.0.0", "host_port": 2222, "guest_port": 22}
    assert ssh.ssh_forward("vm", nics(web, udp, fwd)) == ("127.0.0.1", 2222)
    assert ssh.ssh_forward("vm", nics({**fwd, "host_address": "10.1.2.3"})) == ("10.1.2.3", 2222)
    with pytest.raises(Conflict) as refused:
        ssh.ssh_forward("vm", nics(web, udp))
    assert "--forward tcp:2222:22" in str(refused.value.hint)


def test_the_user_is_read_back_from_the_seed(tmp_path: Path) -> None:
    bundle = tmp_path / "vm.vmdesk"
    seed = bundle / "cloud-init" / "seed.iso"
    seed.parent.mkdir(parents=True)
    with pytest.raises(NotFound, match="no cloud-init seed") as missing:
        ssh.seed_user(bundle, "vm")
    assert "--user NAME" in str(missing.value.hint)
    settings = cloud_init.SeedSettings(vm_name="vm", instance_id=uuid.uuid4(), mac=None,
                                       user="bob")  # fmt: skip
    cloud_init.write_seed(settings, seed)
    assert ssh.seed_user(bundle, "vm") == "bob"
    files = cloud_init.read_seed(seed)
    cloud_init.write_files(cloud_init.SeedFiles("#cloud-config\n{}\n", files.meta_data, None), seed)
    with pytest.raises(NotFound, match="makes no user"):
        ssh.seed_user(bundle, "vm")


def test_building_needs_root_and_says_how(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ImageBuildError, match="needs root") as refused:
        desktop._check_builder("x86_64")
    assert "sudo env VMDESK_CACHE=" in str(refused.value.hint)
    assert "image build debian-desktop --arch x86_64" in str(refused.value.hint)


def test_another_architecture_needs_its_binfmt_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(desktop, "_BINFMT", tmp_path)
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/x\n")
    desktop.ensure_binfmt("aarch64")  # registered and enabled: nothing to do
    (tmp_path / "qemu-aarch64").write_text("disabled\n")
    monkeypatch.setattr(desktop, "_binfmt_conf", lambda name: tmp_path / "missing.conf")
    with pytest.raises(HostToolMissing, match="cannot run on this host") as refused:
        desktop.ensure_binfmt("aarch64")
    assert "qemu-user-static" in str(refused.value.hint)
