"""The web UI's application: the API, the websocket bridges, the pages, and the guard in
front of all of them (see security.py)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

from vmdesk import __version__
from vmdesk.web import (
    api_guest,
    api_host,
    api_hosts,
    api_images,
    api_vms,
    bridges,
    errors,
    pages,
)
from vmdesk.web.context import Context
from vmdesk.web.hot_path import CachedList
from vmdesk.web.security import Guard, HostPolicy


def create_app(token: str, library_root: Path | None = None, listen: Iterable[str] = ()) -> FastAPI:
    """The app for one server launch: ``token`` is its secret, ``listen`` any non-loopback
    addresses it is served on (their names are then accepted in the Host header)."""
    app = FastAPI(
        title="VM-Desk",
        version=__version__,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.vmdesk = Context.open(library_root)
    errors.install(app)
    app.include_router(api_vms.router)
    app.include_router(api_guest.router)
    app.include_router(api_host.router)
    app.include_router(api_hosts.router)
    app.include_router(api_images.router)
    app.include_router(bridges.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC, check_dir=False), name="static")
    # Added first, so it runs inside the guard: the list is served to its rules too.
    app.add_middleware(CachedList, watch=app.state.vmdesk.watch)
    app.add_middleware(_guarded, token=token, hosts=HostPolicy(listen))
    return app


def _guarded(app: ASGIApp, token: str, hosts: HostPolicy) -> ASGIApp:
    return Guard(app, token, hosts)
