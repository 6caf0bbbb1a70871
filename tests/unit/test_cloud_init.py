"""cloud-init NoCloud seeds: the ISO's label and names (read back with pycdlib), the YAML
cloud-init reads, the merge with a user's own user-data, hashed passwords, refused inputs,
and cloud-init 22.4's own schema check of the user-data (Debian's package, run in place)."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pycdlib
import pytest
import yaml

from vmdesk.core import paths
from vmdesk.core.errors import BundleError, ConfigError, ImageBuildError
from vmdesk.images import cloud_init
from vmdesk.images.cloud_init import SeedSettings

VM_UUID = uuid.UUID("6f1c2a3e-4b5d-4e6f-8a9b-0c1d2e3f4a5b")
MAC = "52:54:00:12:34:56"  # YAML 1.1 would read this unquoted as a base-60 integer


def _public_key(tmp_path: Path, name: str = "id_ed25519", comment: str = "me@host") -> Path:
    """An OpenSSH ed25519 public key file (the blob's layout, made without ssh-keygen)."""
    kind = b"ssh-ed25519"
    blob = len(kind).to_bytes(4, "big") + kind + (32).to_bytes(4, "big") + bytes(range(32))
    path = tmp_path / f"{name}.pub"
    path.write_text(f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}\n")
    return path


def _settings(tmp_path: Path, **changes: Any) -> SeedSettings:
    given: dict[str, Any] = {
        "vm_name": "Web_Server.2",
        "instance_id": VM_UUID,
        "mac": MAC,
        "user": "alice",
        "ssh_key_files": (_public_key(tmp_path),),
        "timezone": "Europe/Paris",
        "packages": ("htop", "qemu-guest-agent"),
    }
    return SeedSettings(**{**given, **changes})


def _cloud_config(text: str) -> dict[str, Any]:
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def _verify_with_openssl(password: str, hashed: str) -> bool:
    """The same tool hashes ``password`` again with the hash's own salt."""
    salt = hashed.split("$")[2]
    done = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
        input=password + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip() == hashed


# --- the image ---------------------------------------------------------------------------


def test_the_seed_image_has_the_label_and_names_cloud_init_looks_for(tmp_path: Path) -> None:
    seed = tmp_path / "seed.iso"
    files = cloud_init.write_seed(_settings(tmp_path), seed)
    iso = pycdlib.PyCdlib()
    iso.open(str(seed))
    try:
        assert iso.pvd.volume_identifier.decode().rstrip() == "cidata"
        assert iso.joliet_vd is not None
        assert iso.joliet_vd.volume_identifier.decode("utf-16-be").rstrip() == "cidata"
        rr_names = {c.rock_ridge.name() for c in iso.list_children(rr_path="/") if c.rock_ridge}
        assert rr_names >= {b"user-data", b"meta-data", b"network-config"}
        joliet = {
            c.file_identifier().decode("utf-16-be") for c in iso.list_children(joliet_path="/")
        }
        assert joliet >= {"user-data", "meta-data", "network-config"}
        plain = {c.file_identifier() for c in iso.list_children(iso_path="/")}
        assert plain >= {b"USERDATA.;1", b"METADATA.;1", b"NETCONF.;1"}
        for name, text in files.by_name().items():
            for where in (
                {"rr_path": f"/{name}"},
                {"joliet_path": f"/{name}"},
                {"iso_path": "/" + cloud_init.ISO9660_NAMES[name]},
            ):
                out = io.BytesIO()
                iso.get_file_from_iso_fp(out, **where)
                assert out.getvalue().decode() == text, where
    finally:
        iso.close()


def test_read_seed_gives_back_what_was_written(tmp_path: Path) -> None:
    seed = tmp_path / "seed.iso"
    written = cloud_init.write_seed(_settings(tmp_path), seed)
    assert cloud_init.read_seed(seed) == written


def test_writing_is_atomic_and_private(tmp_path: Path) -> None:
    seed = tmp_path / "seed.iso"
    seed.write_bytes(b"old")
    cloud_init.write_seed(_settings(tmp_path), seed)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert seed.stat().st_mode & 0o077 == 0  # it may hold a password hash
    with pytest.raises(ImageBuildError) as caught:
        cloud_init.write_seed(_settings(tmp_path), tmp_path / "missing" / "seed.iso")
    assert caught.value.hint


def test_read_seed_refuses_what_is_not_a_seed(tmp_path: Path) -> None:
    not_iso = tmp_path / "disk.img"
    not_iso.write_bytes(b"\0" * 65536)
    with pytest.raises(BundleError, match="not an ISO"):
        cloud_init.read_seed(not_iso)
    other = tmp_path / "other.iso"
    iso = pycdlib.PyCdlib()
    iso.new(vol_ident="INSTALL")
    iso.write(str(other))
    iso.close()
    with pytest.raises(BundleError, match="INSTALL") as caught:
        cloud_init.read_seed(other)
    assert "cidata" in (caught.value.hint or "")


# --- the texts ---------------------------------------------------------------------------


def test_user_data_gives_a_sudo_user_with_keys_and_no_password(tmp_path: Path) -> None:
    data = _cloud_config(cloud_init.user_data(_settings(tmp_path)))
    (user,) = data["users"]
    key = _public_key(tmp_path).read_text().strip()
    assert user["name"] == "alice"
    assert user["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    assert user["shell"] == "/bin/bash"
    assert user["lock_passwd"] is True
    assert "passwd" not in user
    assert user["ssh_authorized_keys"] == [key]
    assert data["ssh_pwauth"] is False
    assert data["timezone"] == "Europe/Paris"
    assert data["packages"] == ["htop", "qemu-guest-agent"]


def test_meta_data_and_network_config(tmp_path: Path) -> None:
    settings = _settings(tmp_path, mac="52-54-00-12-34-56")
    assert yaml.safe_load(cloud_init.meta_data(settings)) == {
        "instance-id": str(VM_UUID),
        "local-hostname": "web-server-2",
    }
    network = yaml.safe_load(cloud_init.network_config(settings))
    assert network == {
        "version": 2,
        "ethernets": {"nic0": {"match": {"macaddress": MAC}, "dhcp4": True}},
    }
    no_nic = yaml.safe_load(cloud_init.network_config(_settings(tmp_path, mac=None)))
    assert no_nic == {"config": "disabled"}


def test_the_same_settings_give_the_same_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "a.iso", tmp_path / "b.iso"
    cloud_init.write_seed(_settings(tmp_path), first)
    cloud_init.write_seed(_settings(tmp_path), second)
    assert cloud_init.read_seed(first) == cloud_init.read_seed(second)
    clone = cloud_init.render(_settings(tmp_path, instance_id=uuid.uuid4()))
    assert clone.user_data == cloud_init.render(_settings(tmp_path)).user_data
    assert clone.meta_data != cloud_init.render(_settings(tmp_path)).meta_data


def test_the_default_user_is_the_host_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "bob")  # getpass.getuser() reads it first
    settings = SeedSettings("vm", VM_UUID, MAC)
    assert settings.user == "bob"
    assert _cloud_config(cloud_init.user_data(settings))["users"][0]["name"] == "bob"


# --- passwords ---------------------------------------------------------------------------


def test_a_password_is_stored_only_as_a_sha512_crypt_hash(tmp_path: Path) -> None:
    password = "correct horse battery staple"
    hashed = cloud_init.hash_password(password)
    assert hashed.startswith("$6$")
    assert _verify_with_openssl(password, hashed)
    assert not _verify_with_openssl("wrong", hashed)
    assert cloud_init.hash_password(password) != hashed  # a fresh salt each time
    seed = tmp_path / "seed.iso"
    files = cloud_init.write_seed(_settings(tmp_path, password_hash=hashed), seed)
    (user,) = _cloud_config(files.user_data)["users"]
    assert user["passwd"] == hashed
    assert user["lock_passwd"] is False
    assert _cloud_config(files.user_data)["ssh_pwauth"] is True
    assert password.encode() not in seed.read_bytes()


def test_a_clear_password_is_refused_as_a_hash(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="password_hash") as caught:
        _settings(tmp_path, password_hash="hunter2")
    assert "hash_password" in (caught.value.hint or "")
    with pytest.raises(ConfigError, match="password"):
        cloud_init.hash_password("two\nlines")


# --- refused inputs ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Alice", "1alice", "al ice", "al:ice", "a" * 33, ""])
def test_a_bad_user_name_is_refused_with_a_hint(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="not a valid Linux user name") as caught:
        _settings(tmp_path, user=name)
    assert "lower-case" in (caught.value.hint or "")


def test_other_bad_settings_are_each_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(
            tmp_path, timezone="Mars/Olympus", packages=("htop", "rm -rf"), mac="01:00:5e:00:00:01"
        )
    assert {p.field for p in caught.value.problems} == {"timezone", "packages", "mac"}


def test_a_private_key_is_refused_with_a_hint(tmp_path: Path) -> None:
    private = tmp_path / "id_ed25519"
    private.write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
        "-----END OPENSSH PRIVATE KEY-----\n"
    )
    _public_key(tmp_path)  # its public half sits beside it, as ssh-keygen leaves them
    with pytest.raises(ConfigError, match="is a private key") as caught:
        cloud_init.user_data(_settings(tmp_path, ssh_key_files=(private,)))
    assert f"{private}.pub" in (caught.value.hint or "")
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in str(caught.value)  # the key's text stays out


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello world\n",
        "ssh-rsa notbase64!\n",
        "ssh-rsa c3NoLWVkMjU1MTk=\n",
        "---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n---- END SSH2 PUBLIC KEY ----\n",
    ],
)
def test_a_file_that_is_not_a_public_key_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "key.pub"
    path.write_text(text)
    with pytest.raises(ConfigError, match=str(path)) as caught:
        cloud_init.read_public_keys((path,))
    assert caught.value.hint
    with pytest.raises(ConfigError, match="does not exist"):
        cloud_init.read_public_keys((tmp_path / "nope.pub",))


def test_several_keys_are_kept_in_order_once(tmp_path: Path) -> None:
    first = _public_key(tmp_path, "a", "first")
    second = _public_key(tmp_path, "b", "second")
    both = tmp_path / "authorized_keys"
    both.write_text(f"# mine\n{second.read_text()}\n{first.read_text()}")
    keys = cloud_init.read_public_keys((first, both))
    assert [k.split()[-1] for k in keys] == ["first", "second"]


# --- the user's own user-data --------------------------------------------------------------


def test_their_user_data_wins_except_users_which_are_added(tmp_path: Path) -> None:
    theirs = tmp_path / "mine.yaml"
    theirs.write_text(
        "#cloud-config\npackages: [vim]\nssh_pwauth: true\nruncmd: [[touch, /done]]\n"
        "users:\n  - default\n  - name: carol\n    shell: /bin/zsh\n"
    )
    data = _cloud_config(cloud_init.user_data(_settings(tmp_path, user_data_file=theirs)))
    assert data["packages"] == ["vim"]
    assert data["ssh_pwauth"] is True
    assert data["runcmd"] == [["touch", "/done"]]
    assert data["timezone"] == "Europe/Paris"  # ours, where they said nothing
    assert [u if isinstance(u, str) else u["name"] for u in data["users"]] == [
        "alice",
        "default",
        "carol",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("#!/bin/sh\necho hi\n", "not a YAML mapping"),
        ("- a\n- b\n", "not a YAML mapping"),
        ("users: carol\n", "not a list"),
        ("a: [1\n", "not valid YAML"),
    ],
)
def test_their_user_data_must_be_a_mapping(tmp_path: Path, text: str, message: str) -> None:
    theirs = tmp_path / "mine.yaml"
    theirs.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        cloud_init.read_user_data(theirs)
    assert str(theirs) in str(caught.value)
    assert caught.value.hint


def test_an_empty_user_data_file_adds_nothing(tmp_path: Path) -> None:
    theirs = tmp_path / "mine.yaml"
    theirs.write_text("#cloud-config\n")
    with_it = cloud_init.user_data(_settings(tmp_path, user_data_file=theirs))
    assert with_it == cloud_init.user_data(_settings(tmp_path))


# --- cloud-init's own schema check ----------------------------------------------------------

SYSTEM_PYTHON = "/usr/bin/python3"
# cloud-init's modules import these at load time; without jsonschema its schema check
# quietly checks nothing, so each must be there (Debian: python3-<name>).
SCHEMA_DEPS = ("yaml", "jsonschema", "configobj", "requests", "jsonpatch", "jinja2", "netifaces")


@pytest.fixture(scope="session")
def cloud_init_tree() -> Path:
    """Debian's cloud-init package unpacked in the cache (not installed: no services), whose
    schema module the system python3 runs. A missing tool fails here, never skips."""
    for tool in (SYSTEM_PYTHON, "apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed to check user-data with cloud-init's schema")
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", f"import {', '.join(SCHEMA_DEPS)}"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        pytest.fail(
            f"{SYSTEM_PYTHON} lacks cloud-init's libraries ({probe.stderr.strip()[-200:]}): "
            "apt-get install python3-jsonschema python3-configobj python3-requests "
            "python3-jsonpatch python3-jinja2 python3-netifaces"
        )
    tree = paths.cache_dir() / "tools" / "cloud-init"
    if not (tree / "usr/lib/python3/dist-packages/cloudinit").is_dir():
        tree.parent.mkdir(parents=True, exist_ok=True)
        download = Path(tempfile.mkdtemp(prefix=".cloud-init.", dir=tree.parent))
        try:
            subprocess.run(
                ["apt-get", "download", "cloud-init"], cwd=download, check=True, capture_output=True
            )
            (deb,) = download.glob("cloud-init_*.deb")
            subprocess.run(["dpkg-deb", "-x", str(deb), str(download / "root")], check=True)
            with contextlib.suppress(OSError):  # another run unpacked it first: use theirs
                (download / "root").rename(tree)
        finally:
            shutil.rmtree(download)
    return tree / "usr/lib/python3/dist-packages"


def _schema_check(tree: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [SYSTEM_PYTHON, "-W", "ignore", "-m", "cloudinit.config.schema", "-c", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cloud_init_finds_the_user_data_valid(cloud_init_tree: Path, tmp_path: Path) -> None:
    theirs = tmp_path / "mine.yaml"
    theirs.write_text("users: [default]\nruncmd: [[touch, /done]]\n")
    hashed = cloud_init.hash_password("secret")
    settings = _settings(tmp_path, password_hash=hashed, user_data_file=theirs)
    config = tmp_path / "user-data"
    config.write_text(cloud_init.user_data(settings))
    done = _schema_check(cloud_init_tree, config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Valid cloud-config" in done.stdout
    assert "deprecat" not in (done.stdout + done.stderr).lower()


def test_the_schema_check_can_fail(cloud_init_tree: Path, tmp_path: Path) -> None:
    config = tmp_path / "user-data"
    config.write_text("#cloud-config\nusers: 3\n")
    done = _schema_check(cloud_init_tree, config)
    assert done.returncode != 0
    assert "users: 3 is not of type" in done.stdout + done.stderr
