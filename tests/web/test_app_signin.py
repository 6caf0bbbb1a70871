"""The desktop app's sign-in: a blank page without the token, then the token POSTed as a
bearer from our own origin buys the session cookie (no token in any URL)."""

from __future__ import annotations

import httpx

from tests.web.conftest import TOKEN, LiveServer
from vmdesk.web import security


def test_signin_page_is_blank_and_needs_no_token(live: LiveServer) -> None:
    page = httpx.get(f"{live.base}/signin")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert b"<script" not in page.content and TOKEN.encode() not in page.content
    assert page.headers["x-frame-options"] == "DENY"
    # Nothing else is open: the library page still asks for the token.
    assert httpx.get(f"{live.base}/").status_code == 401
    # A foreign Host is still refused, even for the blank page.
    assert httpx.get(f"{live.base}/signin", headers={"host": "evil.example"}).status_code == 400


def test_session_sets_the_cookie_for_the_bearer_from_our_origin(live: LiveServer) -> None:
    own = {"origin": live.base, "authorization": f"Bearer {TOKEN}"}
    opened = httpx.post(f"{live.base}/api/session", headers=own)
    assert opened.status_code == 204, opened.text
    cookie = opened.cookies[security.cookie_name(live.port)]
    assert cookie == TOKEN and "HttpOnly" in opened.headers["set-cookie"]
    # The cookie alone now opens the library, as in the app's window.
    jar = {security.cookie_name(live.port): cookie}
    assert httpx.get(f"{live.base}/api/vms", cookies=jar).status_code == 200


def test_session_refuses_wrong_tokens_methods_and_origins(live: LiveServer) -> None:
    url = f"{live.base}/api/session"
    assert httpx.post(url, headers={"authorization": "Bearer nope"}).status_code == 401
    assert httpx.post(url).status_code == 401
    bearer = {"authorization": f"Bearer {TOKEN}"}
    foreign = httpx.post(url, headers={**bearer, "origin": "http://evil.example"})
    assert foreign.status_code == 403 and "set-cookie" not in foreign.headers
    assert httpx.get(url, headers=bearer).status_code == 405
    # A cookie cannot buy another cookie: only the bearer token opens a session.
    jar = {security.cookie_name(live.port): TOKEN}
    again = httpx.post(url, cookies=jar, headers={"origin": live.base})
    assert again.status_code == 405 and "set-cookie" not in again.headers
