"""The Linux desktop integration the Debian package installs: the menu entry passes
desktop-file-validate and hands bundles and vmdesk:// links to `vmdesk open`; the MIME type
compiles with update-mime-database and types *.vmdesk by name; the icon renders to PNGs the
same way twice."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEBIAN = ROOT / "packaging" / "debian"
DESKTOP = DEBIAN / "vmdesk.desktop"
MIME = DEBIAN / "vmdesk-mime.xml"
MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"
BUNDLE_TYPE = "application/x-vmdesk-bundle"


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: apt-get install {package} (scripts/setup.sh's list)"
    return found


def _entry() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(interpolation=None, comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string(DESKTOP.read_text(encoding="utf-8"))
    return parser


def test_the_desktop_entry_passes_desktop_file_validate() -> None:
    done = subprocess.run([_tool("desktop-file-validate", "desktop-file-utils"), str(DESKTOP)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    # Errors fail it; warnings and hints only print: none of either is wanted.
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stdout


def test_the_desktop_entry_opens_bundles_and_links_through_vmdesk_open() -> None:
    entry = _entry()["Desktop Entry"]
    assert entry["Exec"] == "vmdesk open --show-errors %u"
    assert entry["MimeType"].split(";") == [BUNDLE_TYPE, "x-scheme-handler/vmdesk", ""]
    assert entry["StartupWMClass"] == "VM-Desk"
    assert entry["Icon"] == "vmdesk"
    [action] = entry["Actions"].strip(";").split(";")
    new = _entry()[f"Desktop Action {action}"]
    assert (
        new["Name"] == "New virtual machine"
        and new["Exec"] == "vmdesk open --show-errors vmdesk://new"
    )


def test_the_window_class_is_the_one_the_app_sets() -> None:
    toolkit = pytest.importorskip("vmdesk.desktop.toolkit")  # the app's module, when there
    assert _entry()["Desktop Entry"]["StartupWMClass"] == toolkit.WM_CLASS


def test_the_mime_type_names_bundles_by_their_glob() -> None:
    root = ET.parse(MIME).getroot()
    assert root.tag == f"{MIME_NS}mime-info"
    [mime_type] = root.findall(f"{MIME_NS}mime-type")
    assert mime_type.get("type") == BUNDLE_TYPE
    assert [g.get("pattern") for g in mime_type.findall(f"{MIME_NS}glob")] == ["*.vmdesk"]
    comment = mime_type.find(f"{MIME_NS}comment")
    assert comment is not None and comment.text == "VM-Desk virtual machine"


def test_update_mime_database_compiles_it(tmp_path: Path) -> None:
    packages = tmp_path / "mime" / "packages"
    packages.mkdir(parents=True)
    shutil.copy(MIME, packages / "vmdesk.xml")
    done = subprocess.run(
        [_tool("update-mime-database", "shared-mime-info"), str(tmp_path / "mime")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # It says only that tmp_path is not on XDG_DATA_DIRS: nothing about our XML.
    assert "vmdesk.xml" not in done.stderr and "rror" not in done.stderr, done.stderr
    globs = (tmp_path / "mime" / "globs2").read_text().splitlines()
    assert any(line.endswith(f":{BUNDLE_TYPE}:*.vmdesk") for line in globs), globs
    icons = (tmp_path / "mime" / "icons").read_text().splitlines()
    assert f"{BUNDLE_TYPE}:vmdesk" in icons


def test_the_icon_renders_to_the_same_pngs_twice(tmp_path: Path) -> None:
    from PIL import Image

    renderer = ROOT / "packaging" / "render_icon.py"
    svg = DEBIAN / "vmdesk.svg"
    for out in ("one", "two"):
        subprocess.run([sys.executable, str(renderer), "hicolor", str(svg), str(tmp_path / out)],
                       check=True, capture_output=True)  # fmt: skip
    made = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert [str(p) for p in made] == sorted(
        f"{n}x{n}/apps/vmdesk.png" for n in (16, 24, 32, 48, 64, 128, 256, 512)
    )
    for png in made:
        assert (tmp_path / "one" / png).read_bytes() == (tmp_path / "two" / png).read_bytes()
    with Image.open(tmp_path / "one" / "256x256" / "apps" / "vmdesk.png") as icon:
        assert icon.size == (256, 256) and icon.mode == "RGBA"
        corner, screen, frame = (icon.getpixel(xy) for xy in ((0, 0), (70, 100), (128, 40)))
    assert isinstance(corner, tuple) and corner[3] == 0  # transparent around the drawing
    # The middle of the screen is the SVG's #3f8fd8, the top edge its #1f3b57 frame.
    assert screen == (0x3F, 0x8F, 0xD8, 255) and frame == (0x1F, 0x3B, 0x57, 255)
