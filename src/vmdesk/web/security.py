"""Who may talk to the web UI: the holder of a per-launch token, through a loopback name,
from the app's own pages.

- The token is handed out once in the printed URL; the first request carrying it gets an
  HttpOnly, SameSite=Strict cookie and is redirected to the same URL without the token.
  Scripts may send ``Authorization: Bearer TOKEN`` instead.
- The desktop app never puts the token in a URL: its window opens ``/signin`` (a blank
  page, the only one served without the token) and, from that page, POSTs the token as a
  bearer to ``/api/session``, which answers with the cookie.
- The Host header must be a loopback name (or the address given with ``--listen``): a
  page on another site that rebinds its DNS name to 127.0.0.1 is refused.
- State-changing requests and websocket upgrades carrying the cookie must come from the
  app's own Origin (a foreign page cannot make the browser act for it); a foreign Origin
  is refused whatever the credentials.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_PARAM = "token"
SIGNIN_PATH = "/signin"
SESSION_PATH = "/api/session"
# No data and no script: the app's window runs its own script here, on our origin.
SIGNIN_PAGE = (
    b"<!doctype html><html><head><meta charset=utf-8><title>VM-Desk</title></head>"
    b"<body style='background:#1e2127'></body></html>"
)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def cookie_name(port: int | None) -> str:
    """Per port, so two servers on one host (each its own token) do not evict each other."""
    return f"vmdesk_token_{port}" if port else "vmdesk_token"


def session_cookie(name: str, token: str) -> str:
    return f"{name}={token}; Path=/; HttpOnly; SameSite=Strict"


def host_name(host_header: str) -> str:
    """``[::1]:8765`` -> ``::1``, ``Localhost:80`` -> ``localhost``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostPolicy:
    """Which Host header names are accepted: loopback ones, plus a ``--listen`` address
    (any IP literal when that is a wildcard: a rebinding attack needs a DNS name)."""

    def __init__(self, listen: Iterable[str] = ()) -> None:
        self.names = set(LOOPBACK_NAMES)
        self.any_ip = False
        for address in listen:
            name = host_name(address) if address.startswith("[") else address.lower()
            if name in ("0.0.0.0", "::"):
                self.any_ip = True
            else:
                self.names.add(name)

    def allows(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        name = host_name(host_header)
        return name in self.names or (self.any_ip and _is_ip(name))


def _same(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())


class Guard:
    """ASGI middleware enforcing the rules above on every HTTP request and websocket."""

    def __init__(self, app: ASGIApp, token: str, hosts: HostPolicy) -> None:
        self.app = app
        self.token = token
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        hosts = headers.getlist("host")
        host = hosts[0] if len(hosts) == 1 else None  # two Host headers: which one counts?
        if not self.hosts.allows(host):
            hint = "open the URL that `vmdesk ui` printed (127.0.0.1 or localhost)"
            await _deny(scope, send, 400, "this server answers only to a loopback name", hint)
            return
        port = scope["server"][1] if scope.get("server") else None
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if scope["type"] == "http" and TOKEN_PARAM in query:
            if _same(query[TOKEN_PARAM], self.token) and scope["method"] in SAFE_METHODS:
                await _redirect_with_cookie(scope, send, query, cookie_name(port), self.token)
            else:
                await _deny(scope, send, 401, "the token in the URL is not this server's",
                            "open the URL that the running `vmdesk ui` printed")  # fmt: skip
            return
        if scope["type"] == "http" and scope["path"] == SIGNIN_PATH:
            await _page(send, SIGNIN_PAGE)
            return
        auth = self._authenticated(headers, cookie_name(port))
        if auth is None:
            await _deny(scope, send, 401, "this needs the token of this `vmdesk ui` session",
                        "open the URL that `vmdesk ui` printed, or send "
                        "`Authorization: Bearer TOKEN`")  # fmt: skip
            return
        if scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            own = f"{'https' if scope['scheme'] in ('https', 'wss') else 'http'}://{host}"
            if (origin is not None and origin.lower() != own.lower()) or (
                origin is None and auth == "cookie"
            ):
                await _deny(scope, send, 403, "requests that change things must come from "
                            "VM-Desk's own pages", "use the web UI itself, or a script with "
                            "`Authorization: Bearer TOKEN` and no foreign Origin")  # fmt: skip
                return
        if scope["type"] == "http" and scope["path"] == SESSION_PATH:
            await _session(scope, send, auth, cookie_name(port), self.token)
            return
        if scope["type"] == "http":
            send = _with_headers(send)
        await self.app(scope, receive, send)

    def _authenticated(self, headers: Headers, cookie: str) -> str | None:
        """ "bearer", "cookie", or None when neither carries the token."""
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and _same(value.strip(), self.token):
            return "bearer"
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header authenticates nothing
            return None
        morsel = jar.get(cookie)
        if morsel is not None and _same(morsel.value, self.token):
            return "cookie"
        return None


# No framing by other sites (clickjacking the buttons), no URL in Referer headers.
PAGE_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
]


def _with_headers(send: Send) -> Send:
    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *PAGE_HEADERS]}
        await send(message)

    return sender


def _body(message: str, hint: str) -> bytes:
    return json.dumps({"error": message, "hint": hint, "problems": []}).encode()


async def _deny(scope: Scope, send: Send, status: int, message: str, hint: str) -> None:
    body = _body(message, hint)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if "websocket.http.response" in scope.get("extensions", {}):  # a real status code
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})


async def _redirect_with_cookie(
    scope: Scope, send: Send, query: dict[str, Any], name: str, token: str
) -> None:
    rest = urlencode({k: v for k, v in query.items() if k != TOKEN_PARAM})
    path = "/" + quote(scope["path"]).lstrip("/")  # never "//host": no open redirect
    location = path + (f"?{rest}" if rest else "")
    cookie = session_cookie(name, token)
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", location.encode()),
                (b"set-cookie", cookie.encode()),
                (b"cache-control", b"no-store"),
                (b"content-length", b"0"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _page(send: Send, body: bytes) -> None:
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store"),
               (b"content-length", str(len(body)).encode()), *PAGE_HEADERS]  # fmt: skip
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _session(scope: Scope, send: Send, auth: str, name: str, token: str) -> None:
    """POST with the bearer token (from our own page: the Origin rule above ran): the
    cookie, so the window's later pages and websockets carry it."""
    if scope["method"] != "POST" or auth != "bearer":
        await _deny(scope, send, 405, "a session is opened by POST with the bearer token",
                    "send `Authorization: Bearer TOKEN` in a POST")  # fmt: skip
        return
    cookie = session_cookie(name, token)
    headers = [(b"set-cookie", cookie.encode()), (b"cache-control", b"no-store"),
               (b"content-length", b"0"), *PAGE_HEADERS]  # fmt: skip
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
