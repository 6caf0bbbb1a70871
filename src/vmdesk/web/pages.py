"""The front end's pages: one index.html for every page route (the page script routes),
and its static files."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

STATIC = Path(__file__).parent / "static"

router = APIRouter(include_in_schema=False)

PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>VM-Desk</title></head>
<body><h1>VM-Desk</h1>
<p>The web pages are not built yet; the API is at <a href="/api/vms">/api/vms</a>
(<a href="/api/docs">docs</a>).</p></body></html>
"""


def _index() -> Response:
    index = STATIC / "index.html"
    if index.is_file():
        return FileResponse(index, headers={"cache-control": "no-store"})
    return HTMLResponse(PLACEHOLDER)


@router.get("/")
def home() -> Response:
    return _index()


@router.get("/new")
def wizard() -> Response:
    return _index()


@router.get("/vms/{name}")
def vm_page(name: str) -> Response:
    return _index()


@router.get("/vms/{name}/console")
def console_page(name: str) -> Response:
    return _index()
