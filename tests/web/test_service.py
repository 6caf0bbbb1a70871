"""Pieces of the service layer and the event stream that need no guest."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.web.conftest import LiveServer
from tests.web.test_vm_web import EventLog
from vmdesk.core.errors import Conflict
from vmdesk.service import jobs, lifecycle, vms


def test_merge_patch_merges_objects_replaces_lists_and_removes_nulls() -> None:
    before = {"a": 1, "display": {"width": 800, "vnc": True}, "disks": [{"file": "x"}]}
    patch = {"display": {"width": 1024, "vnc": None}, "disks": [], "b": {"c": 2}}
    assert vms.merge_patch(before, patch) == {
        "a": 1,
        "display": {"width": 1024},
        "disks": [],
        "b": {"c": 2},
    }
    assert before["display"] == {"width": 800, "vnc": True}  # the input is left alone


def test_log_tail_reads_only_the_end(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"".join(b"%d %s\n" % (i, b"x" * 200) for i in range(2000)))
    last = lifecycle._tail_bytes(log, 3, chunk=1000)
    assert last.splitlines()[0].startswith(b"1997 ") and len(last.splitlines()) == 3
    assert lifecycle._tail_bytes(log, 0) == b""
    assert lifecycle._tail_bytes(log, None) == log.read_bytes()
    log.write_bytes(b"no newline at the end")
    assert lifecycle._tail_bytes(log, 5) == b"no newline at the end"


def test_jobs_report_progress_results_and_errors() -> None:
    registry = jobs.Jobs()
    go = threading.Event()

    def work(job: jobs.Job) -> str:
        job.report("halfway", 50)
        go.wait(10)
        return "result"

    running = registry.start("test", work)
    deadline = time.monotonic() + 10
    while running.progress != 50:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert registry.get(running.id) is running and running.state == "running"
    assert running.as_dict()["message"] == "halfway"
    go.set()
    assert running.done.wait(10)
    assert (running.state, running.result, running.progress) == ("done", "result", 100.0)

    def fail(job: jobs.Job) -> None:
        raise Conflict("taken", hint="pick another")

    failed = registry.start("test", fail)
    assert failed.done.wait(10)
    assert failed.state == "failed" and isinstance(failed.exception, Conflict)
    assert failed.error == {
        "error": "taken",
        "hint": "pick another",
        "kind": "Conflict",
        "problems": [],
    }
    assert registry.get("nope") is None


def test_events_tell_of_vms_added_and_removed(live: LiveServer) -> None:
    with live.client() as api:
        api.post("/api/vms", json={"config": {"name": "before", "cpus": 1}})
        events = EventLog(live)
        try:
            events.wait_for(lambda e: e == {"vm": "before", "status": "stopped",
                                            "event": "current"})  # fmt: skip
            api.post("/api/vms", json={"config": {"name": "new", "cpus": 1}})
            events.wait_for(lambda e: e["vm"] == "new" and e["event"] == "added")
            assert api.delete("/api/vms/before").status_code == 204
            events.wait_for(lambda e: e == {"vm": "before", "status": None, "event": "removed"})
        finally:
            events.close()


@pytest.mark.parametrize("ref", ["../x", "a/b", "x\x00", " ", "-rf"])
def test_references_that_cannot_name_a_vm_are_not_found(live: LiveServer, ref: str) -> None:
    from vmdesk.core.errors import NotFound
    from vmdesk.service import library

    with pytest.raises(NotFound):
        library.find(library.open(live.root), ref)


def test_a_list_read_that_began_before_a_change_is_not_served_after_it(
    live: LiveServer,
) -> None:
    import asyncio

    from vmdesk.service import library as service_library
    from vmdesk.web.events import StatusWatch

    library = service_library.open(live.root)
    watch = StatusWatch(library)

    async def scenario() -> tuple[bytes, bytes]:
        first = asyncio.ensure_future(watch.rows_json(10))  # a read starts...
        await asyncio.sleep(0)
        vms.create(library, {"name": "late", "cpus": 1})  # ...a change lands meanwhile
        watch.invalidate()
        return await first, await watch.rows_json(10)

    _, after = asyncio.run(scenario())
    assert b'"late"' in after


def test_a_stale_list_is_served_at_once_while_one_read_refreshes_it(
    live: LiveServer,
) -> None:
    import asyncio

    from vmdesk.service import library as service_library
    from vmdesk.web.events import StatusWatch

    library = service_library.open(live.root)
    watch = StatusWatch(library)

    async def scenario() -> tuple[bytes | None, bytes, bytes, bytes]:
        none_yet = watch.cached_json(10)  # nothing read yet: the caller must wait
        first = await watch.rows_json(10)
        vms.create(library, {"name": "outside", "cpus": 1})  # not through the app
        stale = watch.cached_json(0)  # too old: served anyway, and a refresh starts
        again = watch.cached_json(0)  # ...only one
        assert again == stale and watch._reading is not None
        await asyncio.shield(watch._reading)
        return none_yet, first, stale or b"", await watch.rows_json(10)

    none_yet, first, stale, refreshed = asyncio.run(scenario())
    assert none_yet is None
    assert stale == first and b'"outside"' not in stale
    assert b'"outside"' in refreshed


def test_the_cached_list_answers_like_the_route_and_behind_the_guard(
    live: LiveServer,
) -> None:
    with live.client() as api:
        routed = api.get("/api/vms")  # the first list is read by the route
        cached = api.get("/api/vms")  # then served from the cache, before the routing
        created = api.post("/api/vms", json={"config": {"name": "fresh", "cpus": 1}})
        after = api.get("/api/vms")  # a change through the app: never the old list
    with live.client(authorization="Bearer wrong") as stranger:
        refused = stranger.get("/api/vms")
    assert routed.status_code == cached.status_code == 200
    assert cached.json() == routed.json()
    assert cached.headers["content-type"] == routed.headers["content-type"]
    assert cached.headers["x-frame-options"] == "DENY"  # the guard's headers too
    assert created.status_code == 201, created.text
    assert "fresh" in [row["name"] for row in after.json()]
    assert refused.status_code == 401
