"""`vmdesk open`'s targets: every link form to its page, names and schemes that are refused,
a bundle in the library opened where it is, one from elsewhere imported first (once), and
the command itself, with the window's launcher replaced by a recorder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vmdesk.cli import app
from vmdesk.cli.open_command import import_for_opening
from vmdesk.core import config as vmconfig
from vmdesk.core.errors import BundleError, Conflict, VMDeskError
from vmdesk.core.library import Library
from vmdesk.desktop import launcher
from vmdesk.desktop.links import BadLink, Target, resolve, vm_page


@pytest.fixture
def library(tmp_path: Path) -> Library:
    return Library(tmp_path / "lib")


def _bundle(library: Library, name: str) -> Path:
    """A real VM bundle, made by the library itself."""
    return library.create(vmconfig.from_dict({"name": name, "cpus": 1})).path


@pytest.mark.parametrize(
    ("arg", "page"),
    [
        (None, "/"),
        ("", "/"),
        ("vmdesk://", "/"),
        ("vmdesk:", "/"),
        ("vmdesk://new", "/new"),
        ("vmdesk://new/", "/new"),
        ("vmdesk://vm/dev", "/vms/dev"),
        ("VMDESK://VM/dev", "/vms/dev"),  # the scheme and the page kind in any case
        ("vmdesk://vm/dev/", "/vms/dev"),
        ("vmdesk://vm/web-1.test_2", "/vms/web-1.test_2"),
        ("vmdesk://vm/d%65v", "/vms/dev"),  # percent-decoded before it is checked
    ],
)
def test_each_link_form_names_its_page(arg: str | None, page: str, tmp_path: Path) -> None:
    assert resolve(arg, tmp_path) == Target(page)


def test_a_console_link_names_its_vm_for_the_consoles_own_window(tmp_path: Path) -> None:
    assert resolve("vmdesk://console/dev", tmp_path) == Target("/vms/dev/console", console="dev")
    assert resolve("vmdesk://console/a.b-c/", tmp_path).console == "a.b-c"
    assert resolve("vmdesk://vm/console", tmp_path) == Target("/vms/console")  # a VM's name


@pytest.mark.parametrize(
    "arg",
    [
        "vmdesk://vm/../etc",
        "vmdesk://vm/..%2Fetc",  # an encoded slash is decoded, then refused with the name
        "vmdesk://vm/%2e%2e",
        "vmdesk://vm/a/b",
        "vmdesk://console/-dash",
        "vmdesk://vm/a%20b",
        "vmdesk://vm/a%00",
        "vmdesk://vm/" + "a" * 64,
        "vmdesk://vm/",
        "vmdesk://vm/<script>",
    ],
)
def test_a_link_cannot_carry_anything_but_a_vm_name(arg: str, tmp_path: Path) -> None:
    with pytest.raises(BadLink, match=r"is not a VM name|no such VM-Desk page") as caught:
        resolve(arg, tmp_path)
    assert caught.value.hint and "\n" not in caught.value.message


@pytest.mark.parametrize(
    ("arg", "says"),
    [
        ("https://example.com/x.vmdesk", "not a vmdesk:// link"),
        ("ftp://host/dev.vmdesk", "not a vmdesk:// link"),
        ("vmdesk://delete/dev", "no such VM-Desk page"),
        ("vmdesk://vm/dev?x=1", "has no query"),
        ("vmdesk://vm/dev#top", "has no query"),
        ("vmdesk:vm/dev", "no such VM-Desk page"),
        ("file://otherhost/srv/dev.vmdesk", "not a file on this computer"),
        ("/home/me/notes.txt", "not a VM bundle"),
        ("/", "not a VM bundle"),
    ],
)
def test_anything_else_is_refused_with_a_hint(arg: str, says: str, tmp_path: Path) -> None:
    with pytest.raises(BadLink, match=says) as caught:
        resolve(arg, tmp_path)
    assert isinstance(caught.value, VMDeskError)
    assert caught.value.hint is not None and "vmdesk://vm/NAME" in caught.value.hint


def test_a_bundle_in_the_library_opens_its_page(library: Library, tmp_path: Path) -> None:
    bundle = _bundle(library, "dev")
    assert resolve(str(bundle), library.root) == Target("/vms/dev")
    assert resolve(bundle.as_uri(), library.root) == Target("/vms/dev")  # as a file manager
    assert resolve(str(bundle) + "/", library.root) == Target("/vms/dev")
    # The library reached through a symlink (or the bundle through one) is still the library.
    link = tmp_path / "link-to-lib"
    link.symlink_to(library.root)
    assert resolve(str(link / "dev.vmdesk"), library.root) == Target("/vms/dev")
    assert resolve(str(bundle), link) == Target("/vms/dev")


def test_a_bundle_from_elsewhere_is_to_be_imported(library: Library, tmp_path: Path) -> None:
    outside = _bundle(Library(tmp_path / "Backups"), "web")
    assert resolve(str(outside), library.root) == Target(None, import_from=outside)
    # A file:// URI is percent-decoded: "my vms" is a folder with a space.
    spaced = tmp_path / "my vms" / "web.vmdesk"
    uri = "file://" + str(spaced).replace(" ", "%20")
    assert resolve(uri, library.root) == Target(None, import_from=spaced)
    assert resolve("file://localhost" + str(outside), library.root).import_from == outside
    # A bundle deeper inside the library's folder is not one of its VMs.
    nested = library.root / "old" / "web.vmdesk"
    assert resolve(str(nested), library.root) == Target(None, import_from=nested)


def test_a_relative_path_is_taken_from_the_current_folder(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bundle(library, "dev")
    monkeypatch.chdir(library.root)
    assert resolve("dev.vmdesk", library.root) == Target("/vms/dev")


def test_an_odd_bundle_name_in_the_library_is_refused(library: Library) -> None:
    with pytest.raises(BadLink, match="is not a VM name"):
        resolve(str(library.root / "bad name.vmdesk"), library.root)


def test_vm_page_quotes_nothing_a_name_can_hold_and_refuses_the_rest() -> None:
    assert vm_page("a.b_c-1") == "/vms/a.b_c-1"
    assert vm_page("a", console=True) == "/vms/a/console"
    for bad in ("", ".hidden", "a/b", "..", "a?b", "é"):
        with pytest.raises(BadLink):
            vm_page(bad)


def test_importing_for_opening_copies_once(library: Library, tmp_path: Path) -> None:
    outside = _bundle(Library(tmp_path / "Backups"), "web")
    assert import_for_opening(library, outside) == "web"
    imported = library.find("web").load()
    assert imported.uuid == Library(tmp_path / "Backups").find("web").load().uuid
    # Opened a second time (double-clicked again): the VM the library holds, no second copy.
    assert import_for_opening(library, outside) == "web"
    assert [b.dir_name for b in library.bundles()] == ["web.vmdesk"]


def test_importing_a_different_vm_of_the_same_name_says_how(
    library: Library, tmp_path: Path
) -> None:
    _bundle(library, "web")
    other = _bundle(Library(tmp_path / "Backups"), "web")  # same name, another VM (UUID)
    with pytest.raises(Conflict, match="already exists") as caught:
        import_for_opening(library, other)
    assert caught.value.hint is not None and "vmdesk import" in caught.value.hint
    assert "--name NEW" in caught.value.hint and str(other) in caught.value.hint


def test_importing_something_that_is_not_a_bundle_fails_naming_it(
    library: Library, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.vmdesk"
    empty.mkdir()
    with pytest.raises(BundleError, match=r"empty\.vmdesk"):
        import_for_opening(library, empty)
    assert library.bundles() == []


def test_the_command_imports_then_launches_at_the_page(
    library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launched: list[tuple[str, str | None]] = []

    def launch(page: str = "/", console: str | None = None) -> str:
        launched.append((page, console))
        return "handed over"  # "quit" ends the process (see test_fast_app)

    monkeypatch.setattr(launcher, "launch", launch)
    monkeypatch.setenv("VMDESK_HOME", str(library.root))
    outside = _bundle(Library(tmp_path / "Backups"), "web")
    runner = CliRunner()
    for argv in (["open"], ["open", "vmdesk://console/web"], ["open", outside.as_uri()]):
        done = runner.invoke(app.cli, argv, catch_exceptions=False)
        assert done.exit_code == 0, done.output
    assert launched == [("/", None), ("/vms/web/console", "web"), ("/vms/web", None)]
    assert library.find("web").path.parent == library.root  # imported before the launch


def test_the_command_refuses_a_bad_target_in_one_line_with_a_hint(tmp_path: Path) -> None:
    env = {**os.environ, "VMDESK_HOME": str(tmp_path / "lib")}
    for target in ("https://example.com/", "vmdesk://vm/../../etc/passwd"):
        done = subprocess.run(
            [sys.executable, "-m", "vmdesk.cli.main", "open", target],
            capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == BadLink.exit_code, done.stderr
        error, hint = done.stderr.strip().splitlines()
        assert error.startswith("error: ") and hint.startswith("hint: ")
        assert "Traceback" not in done.stderr and done.stdout == ""
