"""`vmdesk doctor`'s macOS checks, with the host's facts injected."""

from __future__ import annotations

from vmdesk.engines.vz import doctor
from vmdesk.engines.vz.capabilities import VIRTUALIZATION_ENTITLEMENT, HostFacts

FRAMEWORK = "/Library/Frameworks/Python.framework/Versions/3.12/bin/python3.12"


def test_a_ready_mac_passes_the_engine_checks() -> None:
    host = HostFacts("darwin", "arm64", (14, 1), frozenset({VIRTUALIZATION_ENTITLEMENT}), True)
    checks = {c.name: c for c in doctor.checks(host, "/opt/venv/bin/python")}
    for name in ("vz: macOS", "vz: CPU", "vz: PyObjC", "vz: entitlement", "vz: save/restore"):
        assert checks[name].ok, name
    assert not checks["vz: bridged networking"].ok
    assert all(c.severity == "warning" for c in checks.values())


def test_an_unsigned_framework_python_on_an_old_intel_mac() -> None:
    host = HostFacts("darwin", "x86_64", (12, 6))
    checks = {c.name: c for c in doctor.checks(host, FRAMEWORK)}
    assert not checks["vz: macOS"].ok and "needs 13 or later" in checks["vz: macOS"].detail
    assert not checks["vz: CPU"].ok and not checks["vz: PyObjC"].ok
    signing = checks["vz: entitlement"]
    inner = "/Library/Frameworks/Python.framework/Versions/3.12/Resources/Python.app/Contents/MacOS/Python"  # noqa: E501
    assert not signing.ok and inner in signing.detail
    assert f"codesign --force --sign - --entitlements vz.entitlements {inner}-vz" in signing.fix


def test_framework_binary() -> None:
    assert doctor.framework_binary("/usr/bin/true") is None
