"""libvirtd itself defines every golden domain, and keeps the description we put in it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.unit.test_domain_xml import CASES, GOLDEN
from vmdesk.engines.libvirt import metadata
from vmdesk.engines.libvirt.host import LibvirtHost


def _virsh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True,
                          text=True, check=False, timeout=60)  # fmt: skip


def _offers_passt() -> bool:
    host = LibvirtHost("test", "qemu:///system")
    try:
        return host.offers_passt("x86_64")
    finally:
        host.close()


@pytest.mark.parametrize("name", sorted(CASES))
def test_libvirtd_defines_the_golden_domain_and_keeps_our_description(
    name: str, system_uri: str, tmp_path: Path
) -> None:
    golden = (GOLDEN / f"{name}.xml").read_text()
    # a name of its own, so a VM a person has with the same name is never touched
    xml = golden.replace(f"<name>{name}</name>", f"<name>golden-{name}</name>", 1)
    uuid = "8a5f3c2e-1111-4e5e-9a0b-123456789abc"
    xml = xml.replace(f"<uuid>{uuid}</uuid>", "", 1)  # libvirt makes one
    path = tmp_path / "domain.xml"
    path.write_text(xml)
    done = _virsh("define", str(path))
    if name.endswith("-passt") and not _offers_passt():
        # what VM-Desk asks the host before it writes passt (Debian 12's libvirt 9.0)
        assert done.returncode != 0 and "'passt'" in done.stderr, done.stderr
        return
    assert done.returncode == 0, done.stderr
    try:
        dumped = _virsh("dumpxml", f"golden-{name}").stdout
        stored = metadata.read(dumped)
        assert stored is not None, dumped
        assert stored.config.name == name  # the description, whole, as we wrote it
        assert stored == metadata.read(golden)
    finally:
        assert _virsh("undefine", f"golden-{name}", "--nvram").returncode == 0
