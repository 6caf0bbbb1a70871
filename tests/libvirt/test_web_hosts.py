"""The web API on VMs on a libvirt host: hosts added, listed and removed, and a VM made on
one (through POST /api/vms with a host), listed, started, stopped and deleted, against the
test libvirtd (`lab`: this machine's daemon)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.libvirt.conftest import ours
from tests.vm.conftest import CLI
from tests.web.conftest import LiveServer
from vmdesk.core import hosts

NOWHERE = "qemu+ssh://root@127.0.0.1:1/system?no_verify=1"  # nothing listens on port 1


@pytest.fixture
def api(lab: CLI) -> Iterator[httpx.Client]:
    """The web app over `lab`'s library (which knows host lab)."""
    served = LiveServer(lab.home)
    try:
        with served.client() as client:
            yield client
    finally:
        served.close()


def _finished(api: httpx.Client, reply: httpx.Response, timeout: float = 300) -> Any:
    """The result of a request answered at once (201) or by a job (202, then polled)."""
    if reply.status_code != 202:
        assert reply.status_code == 201, reply.text
        return reply.json()
    job, messages, deadline = reply.json()["job"], set(), time.monotonic() + timeout
    while job["state"] == "running":
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
        job = api.get(f"/api/jobs/{job['id']}").json()
        messages.add(job["message"])
    assert job["state"] == "done", job
    return {**job["result"], "messages": messages}


def _rows_of(api: httpx.Client, name: str) -> list[dict[str, Any]]:
    reply = api.get("/api/hosts/lab/vms")
    assert reply.status_code == 200, reply.text
    return [row for row in reply.json() if row["name"] == name]


def test_hosts_are_added_listed_and_removed_through_the_api(
    api: httpx.Client, lab: CLI, system_uri: str
) -> None:
    reply = api.post("/api/hosts", json={"name": "again", "uri": system_uri})
    assert reply.status_code == 201, reply.text
    added = reply.json()
    assert added["name"] == "again" and added["uri"] == system_uri
    assert added["cpus"] >= 1 and added["libvirt"].startswith("9."), added

    for body, status, needle in [
        ({"name": "web", "uri": "http://lab/system"}, 422, "QEMU driver only"),
        ({"name": "lab", "uri": system_uri}, 409, "a host named 'lab' exists"),
        ({"name": "none", "uri": NOWHERE}, 502, "host none"),
    ]:
        reply = api.post("/api/hosts", json=body)
        assert reply.status_code == status, reply.text
        assert needle in reply.json()["error"] and reply.json()["hint"], reply.text

    hosts.add(lab.home, "gone", NOWHERE)  # written down once, since gone
    rows = {row["name"]: row for row in api.get("/api/hosts").json()}
    assert set(rows) == {"lab", "again", "gone"}, rows
    assert rows["lab"]["reachable"] and rows["again"]["reachable"]
    assert not rows["gone"]["reachable"] and "host gone" in rows["gone"]["error"], rows
    reply = api.get("/api/hosts/gone/vms")
    assert reply.status_code == 502 and "host gone" in reply.json()["error"], reply.text
    assert api.get("/api/hosts/nope/vms").status_code == 404

    assert api.delete("/api/hosts/again").status_code == 204
    assert api.delete("/api/hosts/again").status_code == 404
    assert [row["name"] for row in api.get("/api/hosts").json()] == ["lab", "gone"]


def test_a_vm_is_made_on_a_host_run_and_deleted_through_the_api(
    api: httpx.Client, lab: CLI, vm_name: str
) -> None:
    body = {"config": {"name": vm_name, "arch": "x86_64"}, "image": "tiny-linux", "host": "lab"}
    made = _finished(api, api.post("/api/vms", json=body))
    assert made["name"] == vm_name and made["host"] == "lab", made
    assert made["engine"]["name"] == "libvirt" and made["status"] == "stopped"
    if "messages" in made:  # it took a while: the job told of the upload
        assert any("to host lab" in m for m in made["messages"]), made["messages"]
    assert vm_name in ours()
    assert not list(lab.home.glob("*.vmdesk")) and not list(lab.home.glob(".remote-*"))
    assert api.get("/api/vms").json() == [], "the desk's own list is the desk's VMs"

    rows = _rows_of(api, vm_name)  # the daemon is shared: other tests' VMs may be there
    assert [(r["host"], r["status"], r["engine"]) for r in rows] == [
        ("lab", "stopped", "libvirt")
    ], rows
    ref = f"lab%3A{vm_name}"  # as the pages address it (encodeURIComponent)
    shown = api.get(f"/api/vms/{ref}").json()
    assert shown["config"]["arch"] == "x86_64" and shown["status"] == "stopped", shown
    features = {f["name"]: f["available"] for f in shown["features"]}
    assert features.get("clipboard") is not True and features.get("guest_agent") is not True

    started = api.post(f"/api/vms/{ref}/start")
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "running" and started.json()["host"] == "lab"
    assert api.get(f"/api/vms/lab:{vm_name}").json()["status"] == "running"
    assert api.get(f"/api/vms/{ref}/screenshot").content[:8] == b"\x89PNG\r\n\x1a\n"
    reply = api.delete(f"/api/vms/{ref}")
    assert reply.status_code == 409 and reply.json()["hint"], reply.text  # it runs

    stopped = api.post(f"/api/vms/{ref}/stop", json={"force": True})
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["status"] == "stopped" and stopped.json()["forced"] is True
    assert api.post(f"/api/vms/{ref}/kill").status_code == 409  # nothing to kill

    assert api.delete(f"/api/vms/{ref}").status_code == 204
    assert api.get(f"/api/vms/{ref}").status_code == 404
    assert _rows_of(api, vm_name) == []
    assert vm_name not in ours()


def test_a_create_on_an_unknown_host_makes_nothing(api: httpx.Client, lab: CLI) -> None:
    body = {"config": {"name": "x"}, "image": "tiny-linux", "host": "nope"}
    reply = api.post("/api/vms", json=body)
    assert reply.status_code == 404 and "no host named 'nope'" in reply.json()["error"]
    assert not list(lab.home.glob(".remote-*")) and not list(lab.home.glob("*.vmdesk"))
