"""The checked-in list of every VZ name the engine uses: complete, referenced, consistent."""

from __future__ import annotations

import re
from pathlib import Path

from vmdesk.engines.vz import api_surface

ROOT = Path(__file__).parents[2]
ENGINE = ROOT / "src" / "vmdesk" / "engines" / "vz"
# PyObjC's Virtualization tests (ronaldoussoren/pyobjc, pyobjc-framework-Virtualization/
# PyObjCTest/) that the list cites; each was read when the list was written.
PYOBJC_TESTS = {
    "test_vzvirtualmachineconfiguration.py", "test_vzefivariablestore.py",
    "test_vzgenericplatformconfiguration.py", "test_vzdiskimagestoragedeviceattachment.py",
    "test_vzvirtioblockdeviceconfiguration.py", "test_vzmacaddress.py",
    "test_vzvirtualmachineview.py", "test_vzvirtiofilesystemdeviceconfiguration.py",
    "test_vzshareddirectory.py", "test_vzvirtioconsoleportconfiguration.py",
    "test_vzspiceagentportattachment.py", "test_vzvirtualmachine.py",
    "test_vzvirtualmachinedelegate.py",
}  # fmt: skip
README_SENTENCE = re.compile(r"The VZ engine needs macOS (\d+)(?:\.(\d+))? or later")


def test_minimum_macos_is_13() -> None:
    assert api_surface.MINIMUM_MACOS == (13, 0)


def test_every_entry_has_a_version_and_a_reference() -> None:
    for name, api in api_surface.SURFACE.items():
        assert (10, 0) <= api.since <= (26, 0), name
        kind, _, rest = api.ref.partition(":")
        assert kind in ("pyobjc", "apple", "foundation", "appkit") and rest, name
        if kind == "pyobjc":
            assert rest in PYOBJC_TESTS, name
        assert api_surface.reference_url(api.ref).startswith("https://"), name
        if "." in name:  # a selector's class is listed too, and is not newer than it
            owner = name.split(".")[0]
            assert owner in api_surface.SURFACE, name
            assert api_surface.SURFACE[owner].since <= api.since, name


def test_gated_entries_are_newer_than_the_minimum() -> None:
    for name in api_surface.GATED:
        assert api_surface.since(name) > api_surface.MINIMUM_MACOS, name


def test_every_entry_is_used_by_the_engine() -> None:
    source = "\n".join(
        path.read_text()
        for path in ENGINE.glob("*.py")
        if path.name not in ("api_surface.py", "fake.py")
    )
    for name in [*api_surface.SURFACE, *api_surface.CONSTANTS]:
        word = name.split(".")[-1]
        assert re.search(rf"\b{re.escape(word)}\b", source), f"{name} is listed but not used"


def test_docs_and_readme_claim_the_same_minimum() -> None:
    need = api_surface.MINIMUM_MACOS
    plan = (ROOT / "docs" / "macos-test-plan.md").read_text()
    claims = [*README_SENTENCE.finditer(plan), *README_SENTENCE.finditer(
        (ROOT / "README.md").read_text())]  # fmt: skip
    assert claims, "docs/macos-test-plan.md states the minimum macOS"
    for claim in claims:
        assert (int(claim[1]), int(claim[2] or 0)) == need, claim[0]
