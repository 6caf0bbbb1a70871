"""The routes inside a guest (/guest, /exec, /clipboard, /clipboard/watch, /display) over
real bundles: the checks of their requests, their errors for a VM that does not run or
does not exist, the server's security rules, and (booting a tiny guest with no agents in
it) what they say of agents that do not answer."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pytest

from tests.conftest import ImageGetter
from tests.web.conftest import TOKEN, LiveServer
from tests.web.test_api import _create, _done

TEXT = "text/plain;charset=utf-8"
# Each route with a request it takes: (method, path under /api/vms/NAME, keyword arguments).
Route = tuple[str, str, dict[str, Any]]
ROUTES: list[Route] = [
    ("GET", "/guest", {"params": {"wait": 0}}),
    ("POST", "/exec", {"json": {"argv": ["true"]}}),
    ("GET", "/clipboard", {"params": {"wait": 0}}),
    ("PUT", "/clipboard", {"json": {"data": base64.b64encode(b"hi").decode()}}),
    ("PUT", "/clipboard", {"content": b"hi", "headers": {"content-type": "text/plain"}}),
    ("GET", "/clipboard/watch", {"params": {"seen": 0, "wait": 0}}),
    ("POST", "/display", {"json": {"width": 1024, "height": 768}}),
]


def _call(client: httpx.Client, name: str, route: Route) -> httpx.Response:
    method, path, kwargs = route
    return client.request(method, f"/api/vms/{name}{path}", **kwargs)


def test_a_stopped_vm_is_not_running_and_an_unknown_one_is_not_found(api: httpx.Client) -> None:
    _create(api, "off")
    for route in ROUTES:
        stopped = _call(api, "off", route)
        assert stopped.status_code == 409, (route, stopped.text)
        assert stopped.json()["kind"] == "NotRunning"
        assert stopped.json()["hint"] == "`vmdesk start off`"
        missing = _call(api, "nope", route)
        assert missing.status_code == 404 and missing.json()["kind"] == "NotFound", route


def _problem(response: httpx.Response) -> str:
    """The field of a 422's only problem."""
    assert response.status_code == 422, response.text
    (problem,) = response.json()["problems"]
    return str(problem["field"])


def test_requests_are_checked_before_the_guest_is_asked(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    _create(api, "off")
    vm = "/api/vms/off"
    assert _problem(api.post(f"{vm}/exec", json={"argv": ["cat"], "stdin": "no b64!"})) == "stdin"
    assert "is not base64" in api.post(f"{vm}/exec", json={"argv": ["cat"], "stdin": "aGk"}).text
    assert _problem(api.post(f"{vm}/exec", json={"argv": []})) == "argv"
    assert _problem(api.post(f"{vm}/exec", json={"argv": ["", "x"]})) == "argv"
    assert _problem(api.post(f"{vm}/exec", json={"argv": ["ls"], "timeout": 0})) == "timeout"
    assert _problem(api.post(f"{vm}/exec", json={"argv": ["ls"], "output": "hex"})) == "output"
    assert _problem(api.post(f"{vm}/exec", json={"argv": ["ls"], "shell": True})) == "shell"

    assert _problem(api.put(f"{vm}/clipboard", json={"data": "a?c="})) == "data"
    assert _problem(api.put(f"{vm}/clipboard", json={"type": "text/html", "data": ""})) == "type"
    assert _problem(api.put(f"{vm}/clipboard", json={"type": TEXT})) == "data"
    assert _problem(api.put(f"{vm}/clipboard", json={"data": "", "selection": "x"})) == "selection"
    assert _problem(api.put(f"{vm}/clipboard", content=b"{not json")) == ""
    latin = {"content-type": "text/plain; charset=iso-8859-1"}
    as_text = {"content-type": "text/plain"}
    assert "utf-8 text" in api.put(f"{vm}/clipboard", content=b"gr\xfc\xdfe", headers=as_text).text
    # the same bytes in the charset they are in pass the checks (then the VM is not running)
    assert api.put(f"{vm}/clipboard", content=b"gr\xfc\xdfe", headers=latin).status_code == 409
    png = {"content-type": "image/png"}
    assert api.put(f"{vm}/clipboard", content=b"\x89PNG", headers=png).status_code == 415
    monkeypatch.setattr("vmdesk.web.api_guest.MAX_BODY", 1000)  # the server runs in this process
    big = api.put(f"{vm}/clipboard", content=b"x" * 1001, headers=as_text)
    assert big.status_code == 413 and "at most 32 MiB" in big.json()["error"]

    assert _problem(api.get(f"{vm}/clipboard/watch", params={"seen": -2})) == "seen"
    assert _problem(api.get(f"{vm}/clipboard/watch", params={"wait": 61})) == "wait"
    assert _problem(api.get(f"{vm}/clipboard", params={"wait": -1})) == "wait"
    assert _problem(api.get(f"{vm}/clipboard", params={"selection": "secondary"})) == "selection"
    assert _problem(api.get(f"{vm}/guest", params={"wait": 31})) == "wait"
    assert _problem(api.post(f"{vm}/display", json={"width": 100, "height": 768})) == "width"
    assert _problem(api.post(f"{vm}/display", json={"width": 1024, "height": 9000})) == "height"
    assert _problem(api.post(f"{vm}/display", json={"width": "wide", "height": 768})) == "width"


def test_the_routes_follow_the_security_rules(live: LiveServer, api: httpx.Client) -> None:
    _create(api, "off")
    with httpx.Client(base_url=live.base, timeout=30) as anonymous:
        for route in ROUTES:
            assert _call(anonymous, "off", route).status_code == 401, route
    cookie = {"cookie": f"vmdesk_token_{live.port}={TOKEN}"}
    with httpx.Client(base_url=live.base, headers=cookie, timeout=30) as page:
        for route in ROUTES:
            # reading with the cookie is fine; a change needs the app's own Origin with it
            want = 409 if route[0] == "GET" else 403
            assert _call(page, "off", route).status_code == want, route
        page.headers["origin"] = live.base
        for route in ROUTES:
            assert _call(page, "off", route).status_code == 409, route
    with live.client(origin="http://evil.example") as foreign:
        for route in ROUTES:
            want = 409 if route[0] == "GET" else 403  # the bearer token does not excuse it
            assert _call(foreign, "off", route).status_code == want, route


@pytest.mark.vm
def test_agents_that_do_not_answer(
    live: LiveServer, api: httpx.Client, tiny_image: ImageGetter
) -> None:
    """The tiny guest runs neither qemu-ga nor spice-vdagent: their channels are there,
    nobody answers on them."""
    tiny_image("aarch64")
    body = {"config": {"name": "bare"}, "image": "tiny-linux", "start": True}
    assert _done(api, api.post("/api/vms", json=body))["status"] == "running"
    shown = api.get("/api/vms/bare").json()
    assert shown["runtime"]["agents"] == {"guest_agent": "waiting", "spice_agent": "waiting"}
    assert shown["guest"] is None

    info = api.get("/api/vms/bare/guest", params={"wait": 0.5})
    assert info.status_code == 200 and info.json()["agent"] == "not answering"
    assert info.json()["os"] is None and info.json()["addresses"] == []
    # (under 5 s the control socket gives up first: guest-exec itself waits 10 s for qemu-ga)
    run = api.post("/api/vms/bare/exec", json={"argv": ["true"], "timeout": 10})
    assert run.status_code == 504 and run.json()["kind"] == "GuestAgentTimeout", run.text
    read = api.get("/api/vms/bare/clipboard", params={"wait": 1})
    assert read.status_code == 504 and "SPICE agent did not answer" in read.json()["error"]
    as_text = {"content-type": "text/plain"}
    offered = api.put("/api/vms/bare/clipboard", content="grüße", headers=as_text)
    assert offered.json() == {"delivered": False, "type": TEXT, "size": 7}
    first = api.get("/api/vms/bare/clipboard/watch", params={"seen": -1, "wait": 0}).json()
    assert first["owner"] == "host" and first["types"] == [TEXT]  # the offer above
    assert first["agents"] == {"guest_agent": "waiting", "spice_agent": "waiting"}
    began = time.monotonic()
    seen = {"seen": first["generation"], "wait": 1}
    again = api.get("/api/vms/bare/clipboard/watch", params=seen)
    assert again.json()["generation"] == first["generation"] and time.monotonic() - began >= 1
    resized = api.post("/api/vms/bare/display", json={"width": 1024, "height": 768})
    assert resized.json() == {"width": 1024, "height": 768, "delivered": False}

    # With clipboard sharing off the clipboard is not there at all: the VM's doing, 409.
    assert api.post("/api/vms/bare/stop", json={"force": True}).status_code == 200
    assert api.patch("/api/vms/bare", json={"clipboard": False}).status_code == 200
    assert api.post("/api/vms/bare/start").status_code == 200
    for route in ROUTES[2:6]:
        off = _call(api, "bare", route)
        assert off.status_code == 409 and off.json()["kind"] == "Unsupported", off.text
        assert "clipboard sharing is off" in off.json()["error"]
    assert _call(api, "bare", ROUTES[6]).status_code == 200  # the display still resizes
