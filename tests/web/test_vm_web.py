"""A real tiny guest driven only through the web API: create, start, see it run (GET and
server-sent events), its screen, its serial console and VNC over websockets, snapshots,
pause/resume, stop."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import ImageGetter
from tests.web.conftest import TOKEN, LiveServer
from tests.web.test_api import _done

pytestmark = pytest.mark.vm

READY = "VMDESK-READY"


class EventLog:
    """Collects the server-sent events of /api/events in a thread."""

    def __init__(self, live: LiveServer) -> None:
        self.events: list[dict[str, Any]] = []
        self.client = live.client()
        self.connected = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.connected.wait(10)

    def _read(self) -> None:
        try:
            with self.client.stream("GET", "/api/events", timeout=None) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                self.connected.set()
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
        except httpx.HTTPError:  # closed by close() (or the server stopping)
            pass

    def close(self) -> None:
        self.client.close()

    def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(match(e) for e in self.events):
            assert time.monotonic() < deadline, f"no such event in {self.events}"
            time.sleep(0.05)


def _wait(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _ws(live: LiveServer, path: str, **kwargs: Any) -> ClientConnection:
    """A websocket as the web page opens it: the cookie and the app's own Origin."""
    return connect(
        f"ws://127.0.0.1:{live.port}{path}",
        additional_headers={"Cookie": f"vmdesk_token_{live.port}={TOKEN}"},
        origin=live.base,  # type: ignore[arg-type]
        open_timeout=10,
        **kwargs,
    )


def _read_until(ws: ClientConnection, needle: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"did not see {needle!r}; got {seen[-400:]!r}"
        try:
            message = ws.recv(timeout=left)
        except TimeoutError:
            continue
        seen += message if isinstance(message, bytes) else message.encode()
    return seen


def test_a_vm_through_the_web_api(
    live: LiveServer, api: httpx.Client, tiny_image: ImageGetter
) -> None:
    tiny_image("aarch64")  # built (or found in the cache) before the clock starts
    events = EventLog(live)
    created = _done(
        api, api.post("/api/vms", json={"config": {"name": "webvm"}, "image": "tiny-linux"})
    )
    assert created["config"]["boot"]["kind"] == "linux" and created["status"] == "stopped"
    events.wait_for(lambda e: e == {"vm": "webvm", "status": "stopped", "event": "added"})

    started = api.post("/api/vms/webvm/start")
    assert started.status_code == 200, started.text
    assert api.get("/api/vms/webvm").json()["status"] == "running"
    assert [r["status"] for r in api.get("/api/vms").json()] == ["running"]
    events.wait_for(lambda e: e["vm"] == "webvm" and e["status"] == "running")
    _wait(lambda: READY in api.get("/api/vms/webvm/logs").text, "the guest to be ready")
    assert api.delete("/api/vms/webvm").status_code == 409  # not while it runs
    assert api.patch("/api/vms/webvm", json={"cpus": 2}).status_code == 409

    # the serial console: several viewers at once, both see a command's output
    with _ws(live, "/ws/vms/webvm/serial") as one, _ws(live, "/ws/vms/webvm/serial") as two:
        time.sleep(1)  # the shell may still be starting (see tests/vm/test_console.py)
        one.send(" echo $((6*7))-web\r")
        _read_until(one, b"42-web")
        _read_until(two, b"42-web")

    # the display: the VNC server's RFB banner arrives through the bridge, binary
    with _ws(live, "/ws/vms/webvm/vnc", subprotocols=["binary"]) as vnc:
        assert vnc.subprotocol == "binary"
        assert _read_until(vnc, b"\n").startswith(b"RFB 003.008\n")

    shot = api.get("/api/vms/webvm/screenshot")
    assert shot.status_code == 200 and shot.headers["content-type"] == "image/png"
    assert shot.content[:8] == b"\x89PNG\r\n\x1a\n"

    # a live snapshot (with RAM) needs a qcow2 disk, which is added while stopped: so
    # pause and resume first, then snapshot the disk-less VM's refusal
    assert api.post("/api/vms/webvm/pause").json()["status"] == "paused"
    events.wait_for(lambda e: e["vm"] == "webvm" and e["status"] == "paused")
    assert api.post("/api/vms/webvm/resume").json()["status"] == "running"
    refused = api.post("/api/vms/webvm/snapshots", json={"name": "s"})
    assert refused.status_code in (409, 502) and refused.json()["hint"]

    stopped = api.post("/api/vms/webvm/stop", json={"timeout": 20})
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["status"] == "stopped"
    events.wait_for(lambda e: e["vm"] == "webvm" and e["status"] == "stopped" and
                    e["event"] == "status")  # fmt: skip

    # snapshots: taken while stopped, then one with RAM from the running VM, reverted
    assert api.post("/api/vms/webvm/disks", json={"size": "64MiB"}).status_code == 201
    assert api.post("/api/vms/webvm/snapshots", json={"name": "cold"}).status_code == 201
    assert api.post("/api/vms/webvm/start").status_code == 200
    _wait(lambda: READY in api.get("/api/vms/webvm/logs").text, "the guest to be ready")
    hot = api.post("/api/vms/webvm/snapshots", json={"name": "hot"})
    assert hot.status_code == 201, hot.text
    assert hot.json()["ram"] is True
    tree = api.get("/api/vms/webvm/snapshots").json()
    assert [s["name"] for s in tree["snapshots"]] == ["cold", "hot"]
    assert tree["snapshots"][1]["parent"] == tree["snapshots"][0]["id"]
    reverted = api.post("/api/vms/webvm/snapshots/hot/revert")
    assert reverted.status_code == 200, reverted.text
    assert api.get("/api/vms/webvm").json()["status"] == "running"
    assert api.post("/api/vms/webvm/kill").json()["status"] in ("stopped", "crashed")
    events.close()
