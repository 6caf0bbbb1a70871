"""GET /api/vms answered straight from the cached list, in front of FastAPI's routing.

Every open library page repeats this request, so it is the one a busy server sees most;
FastAPI's routing and dependency solving cost twice what the answer itself does. Only a
request the cache can answer at once is taken here; anything else (a list still being
read after a change, an error) goes on to the documented route in api_vms.py.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from vmdesk.web.events import StatusWatch

LIST_PATH = "/api/vms"
LIST_MAX_AGE = 0.25  # seconds a VM list may be reused (every change through us drops it)


class CachedList:
    """ASGI middleware: serve ``GET /api/vms`` from ``watch`` when it has a current list."""

    def __init__(self, app: ASGIApp, watch: StatusWatch) -> None:
        self.app = app
        self.watch = watch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == LIST_PATH:
            body = self.watch.cached_json(LIST_MAX_AGE)
            if body is not None:
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
