"""Who may use the web UI: the token holder, through a loopback name, from its own pages."""

from __future__ import annotations

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.web.conftest import TOKEN, LiveServer
from vmdesk.web.security import HostPolicy, host_name


def _plain(live: LiveServer, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=live.base, headers=headers, timeout=30)


def test_requests_without_the_token_are_refused(live: LiveServer) -> None:
    with _plain(live) as client:
        for path in ("/api/vms", "/", "/api/openapi.json", "/static/index.html"):
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert "token" in refused.json()["error"]
        assert client.post("/api/vms", json={"config": {"name": "x"}}).status_code == 401
        wrong = {"authorization": "Bearer not-the-token"}
        assert client.get("/api/vms", headers=wrong).status_code == 401
        assert client.get("/api/vms", headers={"cookie": "vmdesk_token_1=nope"}).status_code == 401
        assert client.get("/?token=guess").status_code == 401


def test_the_token_in_the_url_becomes_a_cookie(live: LiveServer) -> None:
    with _plain(live) as client:
        first = client.get(f"/vms/dev?token={TOKEN}&tab=disks")
        assert first.status_code == 303
        assert first.headers["location"] == "/vms/dev?tab=disks"  # the token leaves the URL
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"vmdesk_token_{live.port}={TOKEN};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        # the client keeps the cookie: pages and the API now work without the token
        page = client.get("/vms/dev")
        assert page.status_code == 200
        assert page.headers["x-frame-options"] == "DENY"  # no clickjacking from other sites
        assert page.headers["referrer-policy"] == "no-referrer"
        assert client.get("/api/vms").json() == []
        # ...but changes need the app's own Origin with a cookie
        body = {"config": {"name": "c1", "cpus": 1}}
        assert client.post("/api/vms", json=body).status_code == 403
        foreign = client.post("/api/vms", json=body, headers={"origin": "http://evil.example"})
        assert foreign.status_code == 403
        own = client.post("/api/vms", json=body, headers={"origin": live.base})
        assert own.status_code == 201, own.text


def test_a_foreign_origin_is_refused_even_with_the_bearer_token(live: LiveServer) -> None:
    with live.client(origin="http://evil.example") as client:
        refused = client.post("/api/validate", json={"config": {}})
        assert refused.status_code == 403
        assert "own pages" in refused.json()["error"]
        assert client.get("/api/vms").status_code == 200  # reading is not a change
    with live.client() as script:  # a script: the bearer token and no Origin at all
        assert script.post("/api/validate", json={"config": {}}).status_code == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8765", "192.168.1.10", "127.0.0.1.nip.io", ""]
)
def test_a_non_loopback_host_is_refused(live: LiveServer, host: str) -> None:
    with live.client(host=host) as client:
        refused = client.get("/api/vms")
        assert refused.status_code == 400
        assert "loopback" in refused.json()["error"]
        assert client.get(f"/?token={TOKEN}").status_code == 400  # before any token use


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:1234", "127.0.0.1", "[::1]:8765"])
def test_loopback_names_are_accepted(live: LiveServer, host: str) -> None:
    with live.client(host=host) as client:
        assert client.get("/api/vms").status_code == 200


def test_websockets_need_the_token_and_the_apps_origin(live: LiveServer) -> None:
    url = f"ws://127.0.0.1:{live.port}/ws/vms/none/serial"
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with pytest.raises(InvalidStatus) as no_token:
        connect(url, open_timeout=10).close()
    assert no_token.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as foreign:
        connect(url, additional_headers=bearer, origin="http://evil.example").close()
    assert foreign.value.response.status_code == 403
    cookie = {"Cookie": f"vmdesk_token_{live.port}={TOKEN}"}
    with pytest.raises(InvalidStatus) as no_origin:
        connect(url, additional_headers=cookie).close()
    assert no_origin.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as two_hosts:  # the client's own Host, and this one
        connect(url, additional_headers={**bearer, "Host": "evil.example"}).close()
    assert two_hosts.value.response.status_code == 400
    # allowed in: the VM does not exist, which the bridge says in its close frame
    with connect(url, additional_headers=cookie, origin=live.base) as ws:
        with pytest.raises(Exception):  # noqa: B017 - the close is all that comes
            ws.recv(timeout=10)
        assert ws.close_code == 4404


def test_host_policy() -> None:
    assert host_name("[::1]:80") == "::1" and host_name("LocalHost:1") == "localhost"
    loopback = HostPolicy()
    assert loopback.allows("127.0.0.1:9") and not loopback.allows("10.0.0.2:9")
    assert not loopback.allows(None)
    listen = HostPolicy(["10.0.0.2"])
    assert listen.allows("10.0.0.2:8765") and listen.allows("localhost")
    assert not listen.allows("10.0.0.3")
    wildcard = HostPolicy(["0.0.0.0"])
    assert wildcard.allows("10.0.0.3:1") and wildcard.allows("[fe80::1]:2")
    assert not wildcard.allows("rebound.example:8765")  # a DNS name is still refused


def test_listen_serves_another_address_with_the_token(library_root: object) -> None:
    from pathlib import Path

    assert isinstance(library_root, Path)
    served = LiveServer(library_root, listen="127.0.0.2")
    try:
        base = f"http://127.0.0.2:{served.port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            assert client.get("/api/vms").status_code == 401
            authed = {"authorization": f"Bearer {TOKEN}"}
            assert client.get("/api/vms", headers=authed).status_code == 200
        with pytest.raises(httpx.ConnectError):  # not on 127.0.0.1 as well
            httpx.get(f"http://127.0.0.1:{served.port}/api/vms", timeout=5)
    finally:
        served.close()
