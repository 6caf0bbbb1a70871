"""The REST API over real bundles in a private library (no VM is started here)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.web.conftest import LiveServer


def _done(api: httpx.Client, response: httpx.Response) -> dict[str, Any]:
    """The result of a create or clone, waiting for its job when it answered 202."""
    if response.status_code == 202:
        job_id = response.json()["job"]["id"]
        assert response.headers["location"] == f"/api/jobs/{job_id}"
        deadline = time.monotonic() + 300
        while (job := api.get(f"/api/jobs/{job_id}").json())["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert job["state"] == "done", job
        return dict(job["result"])
    assert response.status_code == 201, response.text
    return dict(response.json())


def _create(api: httpx.Client, name: str, **config: Any) -> dict[str, Any]:
    body = {"config": {"name": name, "cpus": 1, "memory": "256MiB", **config}}
    return _done(api, api.post("/api/vms", json=body))


def test_create_list_get_edit_delete(api: httpx.Client) -> None:
    assert api.get("/api/vms").json() == []
    created = _create(api, "web1", arch="x86_64", display={"device": "none"})
    assert created["name"] == "web1" and created["status"] == "stopped"
    assert created["config"]["memory"] == "256MiB"
    _create(api, "web2", boot={"kind": "linux", "kernel": "/boot/none"})

    rows = {row["name"]: row for row in api.get("/api/vms").json()}
    assert set(rows) == {"web1", "web2"}
    one = rows["web1"]
    assert one["uuid"] == created["config"]["uuid"]
    assert (one["arch"], one["engine"], one["status"], one["cpus"], one["memory_mib"]) == (
        "x86_64", "auto", "stopped", 1, 256,
    )  # fmt: skip
    assert one["display"] is False and one["boot"] == "uefi"
    assert rows["web2"]["display"] is True and rows["web2"]["os_hint"] == "linux"

    got = api.get("/api/vms/web1").json()
    assert got["config"]["arch"] == "x86_64" and got["runtime"]["status"] == "stopped"

    edited = api.patch("/api/vms/web1", json={"cpus": 2, "display": {"width": 1024}})
    assert edited.status_code == 200, edited.text
    config = edited.json()["config"]
    assert config["cpus"] == 2 and config["display"]["width"] == 1024
    assert config["display"]["device"] == "none"  # a merge patch keeps what it does not name

    renamed = api.patch("/api/vms/web1", json={"name": "web3"})
    assert renamed.json()["name"] == "web3"
    assert api.get("/api/vms/web1").status_code == 404

    assert api.delete("/api/vms/web3").status_code == 204
    assert [row["name"] for row in api.get("/api/vms").json()] == ["web2"]


def test_errors_are_json_with_hints(api: httpx.Client) -> None:
    missing = api.get("/api/vms/nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "no VM named 'nope'",
        "hint": "see `vmdesk list` for your VMs",
        "kind": "NotFound",
        "problems": [],
    }
    bad = api.post("/api/vms", json={"config": {"name": "x", "memory": "32MiB", "cpus": 0}})
    assert bad.status_code == 422
    fields = {p["field"]: p for p in bad.json()["problems"]}
    assert set(fields) == {"memory", "cpus"}
    assert fields["memory"]["message"] == "32MiB is below the minimum of 64MiB"
    assert fields["memory"]["hint"]

    _create(api, "dup")
    taken = api.post("/api/vms", json={"config": {"name": "dup"}})
    assert taken.status_code == 409 and "already exists" in taken.json()["error"]
    not_running = api.post("/api/vms/dup/pause")
    assert not_running.status_code == 409
    assert not_running.json()["hint"] == "`vmdesk start dup`"
    assert api.post("/api/vms", content=b"{not json").status_code == 422
    unknown = api.post("/api/vms", json={"config": {"name": "w"}, "image": "windows"})
    assert unknown.status_code == 404 and "ubuntu-24.04" in unknown.json()["hint"]
    assert api.get("/api/vms/dup/logs", params={"kind": "nope"}).status_code == 422
    assert api.get("/api/jobs/unknown").status_code == 404
    assert api.get("/api/vms/..%2F..%2Fetc").status_code == 404
    size = api.post("/api/vms/dup/disks", json={"size": "lots"})
    assert size.status_code == 400 and "is not a size" in size.json()["error"]


def test_validate_schema_and_host(api: httpx.Client) -> None:
    ok = api.post("/api/validate", json={"config": {"name": "fine", "cpus": 1}})
    assert ok.json() == {"problems": []}
    bad = {"name": "bad name", "cpus": 999, "boot": {"kind": "bios"}}
    problems = api.post("/api/validate", json={"config": bad}).json()["problems"]
    assert {p["field"] for p in problems} >= {"name", "cpus"}
    too_many = api.post("/api/validate", json={"config": {"name": "big", "cpus": 255}})
    assert [p["field"] for p in too_many.json()["problems"]] == ["cpus"]  # more than the host

    schema = api.get("/api/schema").json()
    assert schema["title"] == "VMConfig" and "memory" in schema["properties"]
    host = api.get("/api/host").json()
    assert host["cpus"] >= 1 and host["memory_mib"] > 0
    arches = {a["arch"]: a for a in host["arches"]}
    assert arches["aarch64"]["accelerator"] == "tcg"  # VMDESK_ACCEL=tcg in these tests
    assert api.get("/api/openapi.json").json()["info"]["title"] == "VM-Desk"


def test_disks_snapshots_clones_and_logs(api: httpx.Client, live: LiveServer) -> None:
    _create(api, "src")
    assert api.get("/api/vms/src/disks").json() == []
    disk = api.post("/api/vms/src/disks", json={"size": "1GiB"})
    assert disk.status_code == 201, disk.text
    assert disk.json()["file"] == "disks/disk0.qcow2"
    listed = api.get("/api/vms/src/disks").json()
    assert listed[0]["image"]["virtual_size"] == 1 << 30 and listed[0]["problem"] is None

    first = api.post("/api/vms/src/snapshots", json={"name": "one"})
    assert first.status_code == 201 and first.json()["ram"] is False
    second = api.post("/api/vms/src/snapshots", json={})  # named after the time
    tree = api.get("/api/vms/src/snapshots").json()
    assert [s["name"] for s in tree["snapshots"]] == ["one", second.json()["name"]]
    assert tree["snapshots"][1]["parent"] == first.json()["id"]
    assert tree["current"] == second.json()["id"]
    reverted = api.post("/api/vms/src/snapshots/one/revert")
    assert reverted.status_code == 200 and reverted.json()["id"] == first.json()["id"]
    assert api.get("/api/vms/src/snapshots").json()["current"] == first.json()["id"]
    assert api.delete(f"/api/vms/src/snapshots/{second.json()['id']}").status_code == 204
    assert api.delete("/api/vms/src/snapshots/gone").status_code == 404

    clone = _done(api, api.post("/api/vms/src/clone", json={"name": "copy"}))
    assert (
        clone["name"] == "copy"
        and clone["config"]["uuid"] != api.get("/api/vms/src").json()["config"]["uuid"]
    )
    assert (live.root / "copy.vmdesk" / "disks" / "disk0.qcow2").is_file()
    linked = api.post("/api/vms/src/clone", json={"name": "linked", "linked": True})
    assert linked.status_code == 409 and "snapshots" in linked.json()["error"]

    assert api.get("/api/vms/src/logs").text == ""  # never started: no serial log yet
    log = live.root / "src.vmdesk" / "logs" / "serial.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    assert api.get("/api/vms/src/logs", params={"tail": 2}).text == "line 998\nline 999\n"
    assert api.get("/api/vms/src/logs", params={"kind": "engine"}).text == ""


def test_page_routes_serve_the_front_end(live: LiveServer) -> None:
    with live.client() as client:
        for path in ("/", "/new", "/vms/x", "/vms/x/console"):
            page = client.get(path)
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            assert "<html" in page.text.lower()
        assert client.get("/api/nothing").json()["error"] == "Not Found"
