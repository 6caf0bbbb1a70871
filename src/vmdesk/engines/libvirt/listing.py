"""A host's VM-Desk VMs for `vmdesk list`: their states in one call, our metadata element
alone per domain, and the description read as plain JSON (no model: it was checked when
it was written), so a list stays quick with many VMs and hosts."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

from vmdesk.engines.libvirt import connection

NAMESPACE = "urn:vmdesk:vm:1"  # metadata.py writes it


def state_of(libvirt: Any, code: int) -> str:
    """libvirt's domain state as VM-Desk's (core/states.py)."""
    return {
        libvirt.VIR_DOMAIN_RUNNING: "running",
        libvirt.VIR_DOMAIN_BLOCKED: "running",  # idle on a host CPU: still running
        libvirt.VIR_DOMAIN_PAUSED: "paused",
        libvirt.VIR_DOMAIN_SHUTDOWN: "stopping",
        libvirt.VIR_DOMAIN_SHUTOFF: "stopped",
        libvirt.VIR_DOMAIN_CRASHED: "crashed",
        libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
    }.get(code, "unknown")


def rows(host: str, uri: str, timeout: float) -> list[dict[str, Any]]:
    """One `vmdesk list` row per VM-Desk domain on the host (others are not listed)."""
    libvirt = connection.module()
    conn = connection.connect(uri, f"host {host}", timeout=timeout)
    found = []
    try:
        with connection.errors(f"host {host}"):
            for dom, stats in conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE):
                try:
                    ours = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NAMESPACE)
                except libvirt.libvirtError:
                    continue  # not a VM-Desk domain
                row = _row(host, str(ours), state_of(libvirt, stats.get("state.state", -1)))
                if row is not None:
                    found.append(row)
    finally:
        conn.close()
    return sorted(found, key=lambda r: str(r["name"]))


def _row(host: str, element: str, state: str) -> dict[str, Any] | None:
    try:
        data = json.loads(ET.fromstring(element).findtext("config") or "")
    except (ET.ParseError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return {
        "name": data.get("name"), "host": host, "status": state, "arch": data.get("arch"),
        "cpus": data.get("cpus"), "memory": data.get("memory"), "engine": "libvirt",
        "isolation": data.get("isolation"), "uuid": data.get("uuid"),
    }  # fmt: skip
