"""The macOS app's inputs, checked on Linux (the build itself needs a Mac: see
docs/macos-test-plan.md): `build-macos-app.sh --check` passes and fails when an input
drifts; the entitlements, Info.plist, the cask and the entry point say what the build needs;
off a Mac the build refuses in one line."""

from __future__ import annotations

import importlib.util
import platform
import plistlib
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import vmdesk

ROOT = Path(__file__).resolve().parents[2]
MACOS = ROOT / "packaging" / "macos"
SCRIPT = ROOT / "scripts" / "build-macos-app.sh"
VIRTUALIZATION = "com.apple.security.virtualization"
NETWORKING = "com.apple.vm.networking"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, MACOS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _plist(path: Path) -> dict[str, Any]:
    with path.open("rb") as file:
        data = plistlib.load(file)
    assert isinstance(data, dict)
    return data


def _tool(*args: str, cwd: Path = ROOT, tool: Path = MACOS / "buildtool.py") -> str:
    done = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True,
                          cwd=cwd, check=True, timeout=120)  # fmt: skip
    return done.stdout.strip()


def test_the_check_passes_on_the_tree() -> None:
    done = subprocess.run(["bash", str(SCRIPT), "--check"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"VM-Desk.app {vmdesk.__version__} (org.vmdesk.VMDesk)" in done.stdout
    assert f"VM-Desk-{vmdesk.__version__}-macos-arm64.zip" in done.stdout


def test_virtualization_is_entitled_and_networking_only_when_opted_in() -> None:
    base = _plist(MACOS / "vmdesk.entitlements")
    networking = _plist(MACOS / "vmdesk-networking.entitlements")
    assert base[VIRTUALIZATION] is True and networking[VIRTUALIZATION] is True
    assert NETWORKING not in base
    assert networking == {**base, NETWORKING: True}  # the same, plus that one key


def test_codesign_gets_the_entitlements_without_comments(tmp_path: Path) -> None:
    plain = tmp_path / "entitlements.plist"
    _tool("entitlements", str(MACOS / "vmdesk.entitlements"), str(plain))
    assert "<!--" in (MACOS / "vmdesk.entitlements").read_text()
    assert "<!--" not in plain.read_text()
    assert _plist(plain) == _plist(MACOS / "vmdesk.entitlements")


def test_info_plist_names_the_app_with_vmdesks_version(tmp_path: Path) -> None:
    template = _plist(MACOS / "Info.plist")
    assert "CFBundleShortVersionString" not in template  # the build adds it: it cannot drift
    out = tmp_path / "Info.plist"
    _tool("info-plist", str(out))
    info = _plist(out)
    assert info["CFBundleIdentifier"] == "org.vmdesk.VMDesk"
    assert info["CFBundleName"] == info["CFBundleExecutable"] == "VM-Desk"
    assert info["CFBundleShortVersionString"] == info["CFBundleVersion"] == vmdesk.__version__
    assert info["LSMinimumSystemVersion"] == "13.0" and info["CFBundlePackageType"] == "APPL"
    assert "<!--" not in out.read_text()


def test_the_cask_downloads_the_zip_the_script_makes() -> None:
    cask = (MACOS / "vmdesk.rb").read_text()
    [version] = re.findall(r'^  version "([^"]+)"$', cask, re.MULTILINE)
    [url] = re.findall(r'^  url "([^"]+)"$', cask, re.MULTILINE)
    assert version == vmdesk.__version__
    made = _tool("zip-name", "arm64")  # the name the script gives its zip
    assert made == f"VM-Desk-{vmdesk.__version__}-macos-arm64.zip"
    assert url.replace("#{version}", version).endswith(f"/v{version}/{made}")
    assert '"$tool" zip-name "$arch"' in SCRIPT.read_text()  # the script asks the same tool
    assert '  app "VM-Desk.app"' in cask and 'depends_on macos: ">= :ventura"' in cask
    assert "brew install qemu" in cask  # in the caveats: QEMU is optional, no depends_on
    assert not re.search(r"^\s*depends_on formula:", cask, re.MULTILINE)
    assert '"~/Library/Application Support/vmdesk"' in cask  # zap: the library itself


def test_the_filled_cask_differs_only_by_its_digest(tmp_path: Path) -> None:
    digest = "ab" * 32
    out = tmp_path / "vmdesk.rb"
    _tool("cask", digest, str(out))
    before = (MACOS / "vmdesk.rb").read_text().splitlines()
    after = out.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [(f'  sha256 "{"0" * 64}"', f'  sha256 "{digest}"')]
    refused = subprocess.run([sys.executable, str(MACOS / "buildtool.py"), "cask", "xyz",
                              str(out)], capture_output=True, text=True, check=False)  # fmt: skip
    assert refused.returncode != 0 and "not a sha256 digest" in refused.stderr


@pytest.mark.parametrize(
    ("file", "old", "new", "says"),
    [
        ("vmdesk.rb", 'version "0.1.0"', 'version "9.9.9"', "version is '9.9.9'"),
        ("vmdesk.rb", "-macos-arm64.zip", "-mac.zip", "is not the zip the build makes"),
        ("vmdesk.rb", '"~/Library/Caches/vmdesk",', "", "zap does not remove ~/Library/Caches"),
        ("vmdesk.entitlements", "<dict>", "<dict><key>com.apple.vm.networking</key><true/>",
         "must be opt-in"),
        ("vmdesk-networking.entitlements", "<key>com.apple.vm.networking", "<key>com.other",
         "is not vmdesk.entitlements + com.apple.vm.networking"),
        ("Info.plist", "org.vmdesk.VMDesk", "org.example.Other", "CFBundleIdentifier"),
        ("Info.plist", "<dict>", "<dict><key>CFBundleVersion</key><string>1</string>",
         "CFBundleVersion is set by the build"),
        ("Info.plist", "</dict>", "", "a plist does not parse"),
    ],
)  # fmt: skip
def test_the_check_fails_when_an_input_drifts(
    tmp_path: Path, file: str, old: str, new: str, says: str
) -> None:
    if file == "vmdesk.rb":
        assert old.replace("0.1.0", vmdesk.__version__) == old, "the version moved: update"
    copy = tmp_path / "packaging" / "macos"
    shutil.copytree(MACOS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "packaging" / "debian").mkdir()
    shutil.copy(ROOT / "packaging" / "debian" / "vmdesk.svg", tmp_path / "packaging" / "debian")
    shutil.copy(ROOT / "packaging" / "render_icon.py", tmp_path / "packaging")
    (tmp_path / "src").symlink_to(ROOT / "src")
    text = (copy / file).read_text()
    assert old in text
    (copy / file).write_text(text.replace(old, new, 1))
    done = subprocess.run([sys.executable, str(copy / "buildtool.py"), "check"],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 1, done.stdout
    assert says in done.stderr, done.stderr


def test_the_entry_point_runs_vmdesk_app_or_the_command_given() -> None:
    entry = _module("vmdesk_app")
    assert entry.command_line([]) == ["app"]  # from the Finder or the Dock
    assert entry.command_line(["-psn_0_12345"]) == ["app"]
    assert entry.command_line(["doctor"]) == ["doctor"]  # the bundle's executable, by hand
    for args in (["--version"], ["-m", "vmdesk.cli.main", "--version"]):  # -m: as a Python
        done = subprocess.run([sys.executable, str(MACOS / "vmdesk_app.py"), *args],
                              capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        assert done.stdout.strip() == f"vmdesk, version {vmdesk.__version__}", args


def test_the_app_carries_its_whole_dependency_closure() -> None:
    packages, modules = _module("buildtool").bundled_packages()  # vmdesk[macos,app]'s
    # Imported by name at run time (uvicorn's protocols, pywebview's backends): whole.
    assert {"uvicorn", "pydantic", "pydantic_core", "fastapi", "rich", "qemu"} <= set(packages)
    assert "webview" in packages  # the app extra's window
    assert "typing_extensions" in modules
    assert "pytest" not in packages and "mypy" not in packages  # the dev extra is not asked
    if platform.system() != "Darwin":  # the macos extra's PyObjC is for darwin only
        assert "objc" not in packages and "Virtualization" not in packages


@pytest.mark.skipif(platform.system() == "Darwin", reason="builds for real on a Mac")
def test_off_a_mac_the_build_refuses_in_one_line() -> None:
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("build-macos-app: error: builds only on macOS")
    assert "hint:" in line and "--check" in line
