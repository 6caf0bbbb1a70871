"""/api/hosts and HOST:VM references without a libvirt daemon: what is refused before any
host is dialled (tests/libvirt/test_web_hosts.py has the real host)."""

from __future__ import annotations

from pathlib import Path

import httpx

from vmdesk.core import hosts


def test_no_hosts_is_an_empty_list(api: httpx.Client) -> None:
    assert api.get("/api/hosts").json() == []


def test_a_bad_host_is_refused_with_its_field_and_a_hint(api: httpx.Client) -> None:
    for body, needle in [
        ({"name": "web", "uri": "http://lab/system"}, "QEMU driver only"),
        ({"name": "pw", "uri": "qemu+ssh://me:secret@lab/system"}, "stores no credentials"),
        ({"name": "local", "uri": "qemu:///system"}, "can't name a host"),
    ]:
        reply = api.post("/api/hosts", json=body)
        assert reply.status_code == 422, reply.text
        assert needle in reply.json()["error"] and reply.json()["hint"], reply.text
    reply = api.post("/api/hosts", json={"name": "lab", "uri": "qemu:///system", "accel": "x"})
    assert reply.status_code == 422 and reply.json()["problems"][0]["field"] == "accel"
    assert api.get("/api/hosts").json() == []


def test_unknown_hosts_are_404_wherever_they_are_named(api: httpx.Client) -> None:
    assert api.get("/api/hosts/nope/vms").status_code == 404
    assert api.delete("/api/hosts/nope").status_code == 404
    named = [("GET", "/api/vms/nope%3Adev"), ("POST", "/api/vms/nope:dev/start"),
             ("POST", "/api/vms/nope:dev/kill"), ("DELETE", "/api/vms/nope:dev")]  # fmt: skip
    for method, path in named:
        reply = api.request(method, path)
        assert reply.status_code == 404, (path, reply.text)
        assert "no host named 'nope'" in reply.json()["error"], reply.text
    reply = api.post("/api/vms", json={"config": {"name": "dev"}, "host": "nope"})
    assert reply.status_code == 404 and "no host named 'nope'" in reply.json()["error"]


def test_a_host_that_does_not_answer_says_why(api: httpx.Client, library_root: Path) -> None:
    hosts.add(library_root, "gone", "qemu+ssh://root@127.0.0.1:1/system?no_verify=1")
    [row] = api.get("/api/hosts").json()
    assert row["name"] == "gone" and row["reachable"] is False and "host gone" in row["error"]
    reply = api.get("/api/hosts/gone/vms")
    assert reply.status_code == 502 and reply.json()["hint"], reply.text
    assert api.delete("/api/hosts/gone").status_code == 204
    assert api.get("/api/hosts").json() == []
