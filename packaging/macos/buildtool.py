"""The facts scripts/build-macos-app.sh builds from, in one place, and `--check` on them.

    python buildtool.py version            # vmdesk.__version__, read from this checkout
    python buildtool.py zip-name ARCH      # VM-Desk-VERSION-macos-ARCH.zip
    python buildtool.py info-plist OUT     # Info.plist: the template plus the version
    python buildtool.py entitlements IN OUT  # IN for codesign: plain plist XML, no comments
    python buildtool.py cask SHA256 OUT    # the cask with the release zip's digest filled in
    python buildtool.py check              # every input agrees (runs on Linux too)

Standard library only, except `check`'s icon step (Pillow) and zap paths (platformdirs), and
`bundled_packages` (packaging), which run in a venv that has them.
"""

from __future__ import annotations

import importlib.metadata
import plistlib
import re
import sys
import tempfile
from pathlib import Path
from typing import Any
from xml.parsers.expat import ExpatError

sys.dont_write_bytecode = True  # it imports its neighbours: no __pycache__ in the tree
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
INFO_PLIST = HERE / "Info.plist"
ENTITLEMENTS = HERE / "vmdesk.entitlements"
NETWORKING_ENTITLEMENTS = HERE / "vmdesk-networking.entitlements"
CASK = HERE / "vmdesk.rb"
ICON_SVG = ROOT / "packaging" / "debian" / "vmdesk.svg"
BUNDLE_ID = "org.vmdesk.VMDesk"
APP_NAME = "VM-Desk"
CASK_ARCH = "arm64"  # the one architecture the cask offers (the vz engine's Apple silicon)
VIRTUALIZATION = "com.apple.security.virtualization"
NETWORKING = "com.apple.vm.networking"
SHA256_PLACEHOLDER = "0" * 64
# Info.plist's LSMinimumSystemVersion as the cask's `depends_on macos:` names it.
MACOS_NAMES = {"13.0": ":ventura", "14.0": ":sonoma", "15.0": ":sequoia"}
VERSION_KEYS = ("CFBundleShortVersionString", "CFBundleVersion")
# What the app bundles: vmdesk with the vz engine's PyObjC and the window's pywebview.
APP_REQUIREMENTS = ("vmdesk[macos,app]",)


def version() -> str:
    """This checkout's vmdesk.__version__ (not an installed copy's)."""
    sys.path.insert(0, str(ROOT / "src"))
    import vmdesk

    return vmdesk.__version__


def zip_name(version: str, arch: str) -> str:
    return f"{APP_NAME}-{version}-macos-{arch}.zip"


def load_plist(path: Path) -> dict[str, Any]:
    with path.open("rb") as file:
        data = plistlib.load(file)
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a dictionary")
    return data


def info_plist(version: str) -> dict[str, Any]:
    """The app's Info.plist: the template, which holds no version, plus the version."""
    return {**load_plist(INFO_PLIST), **dict.fromkeys(VERSION_KEYS, version)}


def cask_fields(text: str) -> dict[str, Any]:
    """The stanzas `check` compares, read from the cask's Ruby with patterns (it is data)."""

    def one(pattern: str) -> str:
        found = re.findall(pattern, text, re.MULTILINE)
        return found[0] if len(found) == 1 else ""

    zap = re.search(r"zap trash: \[(.*?)\]", text, re.DOTALL)
    return {
        "cask": one(r'^cask "([^"]+)" do$'),
        "version": one(r'^  version "([^"]+)"$'),
        "sha256": one(r'^  sha256 "([^"]+)"'),
        "url": one(r'^  url "([^"]+)"$'),
        "app": one(r'^  app "([^"]+)"$'),
        "macos": one(r'^  depends_on macos: "([^"]+)"$'),
        "arch": one(r"^  depends_on arch: (:\w+)$"),
        "zap": re.findall(r'"([^"]+)"', zap.group(1)) if zap else [],
    }


def filled_cask(sha256: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise SystemExit(f"buildtool: {sha256!r} is not a sha256 digest")
    text = CASK.read_text(encoding="utf-8")
    old = f'  sha256 "{SHA256_PLACEHOLDER}"'
    if text.count(old) != 1:
        raise SystemExit(f"buildtool: {CASK.name} lacks its sha256 placeholder")
    return text.replace(old, f'  sha256 "{sha256}"')


def bundled_packages() -> tuple[list[str], list[str]]:
    """The importable names the app must carry whole (packages, single modules): every
    distribution in the closure of APP_REQUIREMENTS, in the venv that runs py2app. Whole,
    because py2app follows only static imports and VM-Desk imports its commands, engines
    and PyObjC frameworks by name (uvicorn, anyio and pywebview their backends too)."""
    from packaging.requirements import Requirement

    seen: dict[tuple[str, frozenset[str]], importlib.metadata.Distribution] = {}
    todo = [Requirement(r) for r in APP_REQUIREMENTS]
    while todo:
        req = todo.pop()
        key = (req.name.lower().replace("_", "-"), frozenset(req.extras))
        if key in seen:
            continue
        seen[key] = dist = importlib.metadata.distribution(req.name)
        for text in dist.requires or ():
            sub = Requirement(text)
            extras = req.extras or {""}
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append(sub)
    packages, modules = set(), set()
    for dist in seen.values():
        for file in dist.files or ():
            if len(file.parts) > 1:  # in a folder: a package (not x.dist-info, .., x.libs)
                if file.parts[0].isidentifier() and file.parts[0] != "__pycache__":
                    packages.add(file.parts[0])
            elif file.suffix in (".py", ".so") and file.name.split(".")[0].isidentifier():
                modules.add(file.name.split(".")[0])  # x.py, x.cpython-312-darwin.so
    return sorted(packages), sorted(modules)


def _check_entitlements(problems: list[str]) -> None:
    base, networking = load_plist(ENTITLEMENTS), load_plist(NETWORKING_ENTITLEMENTS)
    if base.get(VIRTUALIZATION) is not True:
        problems.append(f"{ENTITLEMENTS.name}: {VIRTUALIZATION} is not true")
    if NETWORKING in base:
        problems.append(f"{ENTITLEMENTS.name}: {NETWORKING} must be opt-in (--networking)")
    if networking != {**base, NETWORKING: True}:
        problems.append(f"{NETWORKING_ENTITLEMENTS.name} is not {ENTITLEMENTS.name} + {NETWORKING}")


def _check_info(vmdesk_version: str, problems: list[str]) -> dict[str, Any]:
    template = load_plist(INFO_PLIST)
    for key in VERSION_KEYS:
        if key in template:
            problems.append(f"Info.plist: {key} is set by the build, from vmdesk.__version__")
    wanted = {"CFBundleIdentifier": BUNDLE_ID, "CFBundleName": APP_NAME,
              "CFBundleExecutable": APP_NAME, "CFBundlePackageType": "APPL"}  # fmt: skip
    for key, value in wanted.items():
        if template.get(key) != value:
            problems.append(f"Info.plist: {key} is {template.get(key)!r}, not {value!r}")
    built = plistlib.loads(plistlib.dumps(info_plist(vmdesk_version)))
    if any(built[key] != vmdesk_version for key in VERSION_KEYS):
        problems.append("the built Info.plist's version is not vmdesk.__version__")
    return built


def _check_cask(info: dict[str, Any], vmdesk_version: str, problems: list[str]) -> None:
    cask = cask_fields(CASK.read_text(encoding="utf-8"))
    url = cask["url"].replace("#{version}", cask["version"])
    expected = {
        "cask": "vmdesk",
        "version": vmdesk_version,
        "sha256": SHA256_PLACEHOLDER,
        "app": f"{info['CFBundleName']}.app",
        "macos": ">= " + MACOS_NAMES.get(info.get("LSMinimumSystemVersion", ""), "?"),
        "arch": f":{CASK_ARCH}",
    }
    for key, value in expected.items():
        if cask[key] != value:
            problems.append(f"vmdesk.rb: {key} is {cask[key]!r}, the build makes {value!r}")
    if url.rsplit("/", 1)[-1] != zip_name(vmdesk_version, CASK_ARCH):
        problems.append(f"vmdesk.rb: url {url!r} is not the zip the build makes")
    for path in _library_paths():
        if path not in cask["zap"]:
            problems.append(f"vmdesk.rb: zap does not remove {path}")


def _library_paths() -> list[str]:
    """Where VM-Desk keeps its library and cache on macOS (platformdirs, as core.paths)."""
    from platformdirs.macos import MacOS

    from vmdesk.core.paths import APP_NAME as DIR_NAME

    home = str(Path.home())
    dirs = MacOS(DIR_NAME)
    return [d.replace(home, "~", 1) for d in (dirs.user_data_dir, dirs.user_cache_dir)]


def _check_icon(problems: list[str]) -> None:
    sys.path.insert(0, str(HERE.parent))  # packaging/render_icon.py
    import render_icon
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        render_icon.main(["iconset", str(ICON_SVG), tmp])
        for name, pixels in render_icon.ICONSET.items():
            with Image.open(Path(tmp) / name) as png:
                if png.size != (pixels, pixels):
                    problems.append(f"icon: {name} is {png.size}, not {pixels}x{pixels}")


def _check_entry_point(problems: list[str]) -> None:
    sys.path.insert(0, str(HERE))
    import vmdesk_app

    for given, wanted in (([], ["app"]), (["-psn_0_42"], ["app"]), (["doctor"], ["doctor"])):
        if vmdesk_app.command_line(given) != wanted:
            problems.append(f"vmdesk_app.py: {given} runs {vmdesk_app.command_line(given)}")
    compile((HERE / "setup.py").read_text(encoding="utf-8"), "setup.py", "exec")


def check() -> list[str]:
    """Every problem with the build's inputs (none: they agree)."""
    problems: list[str] = []
    vmdesk_version = version()
    try:
        _check_entitlements(problems)
        info = _check_info(vmdesk_version, problems)
    except (OSError, ValueError, ExpatError, plistlib.InvalidFileException) as exc:
        return [f"a plist does not parse: {exc}"]
    _check_cask(info, vmdesk_version, problems)
    _check_icon(problems)
    _check_entry_point(problems)
    return problems


def main(argv: list[str]) -> None:
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    if command == "version" and not args:
        print(version())
    elif command == "zip-name" and len(args) == 1:
        print(zip_name(version(), args[0]))
    elif command == "info-plist" and len(args) == 1:
        Path(args[0]).write_bytes(plistlib.dumps(info_plist(version()), sort_keys=True))
    elif command == "entitlements" and len(args) == 2:
        Path(args[1]).write_bytes(plistlib.dumps(load_plist(Path(args[0])), sort_keys=True))
    elif command == "cask" and len(args) == 2:
        Path(args[1]).write_text(filled_cask(args[0]), encoding="utf-8")
    elif command == "check" and not args:
        problems = check()
        for problem in problems:
            print(f"build-macos-app --check: {problem}", file=sys.stderr)
        if problems:
            sys.exit(1)
        print(f"build-macos-app --check: inputs agree: {APP_NAME}.app {version()} "
              f"({BUNDLE_ID}), {zip_name(version(), CASK_ARCH)}, {CASK.name}")  # fmt: skip
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
