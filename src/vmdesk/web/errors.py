"""Errors as JSON: the CLI's message and hint, each problem of a description, and an HTTP
status that says whose fault it is (4xx for the request or the VM's state)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from vmdesk.core import errors
from vmdesk.service.jobs import error_body

# Most specific first: the first class an error is an instance of gives its status.
STATUS: tuple[tuple[type[errors.VMDeskError], int], ...] = (
    (errors.ConfigError, 422),
    (errors.PolicyViolation, 422),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.Unsupported, 409),  # the VM's engine can't do that: the request, not the server
    (errors.StorageError, 409),
    (errors.BundleError, 409),
    (errors.HostToolMissing, 503),
    (errors.GuestTimeout, 504),
    (errors.EngineError, 502),
    (errors.ImageBuildError, 502),
    (errors.HostError, 502),  # the other host failed us, not this server
    (errors.VMDeskError, 400),
)


def status_for(exc: errors.VMDeskError) -> int:
    return next(code for kind, code in STATUS if isinstance(exc, kind))


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts)


async def _vmdesk_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.VMDeskError)
    return JSONResponse(error_body(exc), status_code=status_for(exc))


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {
            "field": _field(tuple(e.get("loc", ()))),
            "message": str(e.get("msg", "is invalid")),
            "hint": "see /api/openapi.json for what this request takes",
        }
        for e in exc.errors()
    ]
    first = problems[0] if problems else {"field": "", "message": "is invalid"}
    where = f"{first['field']}: " if first["field"] else ""
    return JSONResponse(
        {
            "error": f"invalid request: {where}{first['message']}",
            "hint": "see /api/openapi.json for what this request takes",
            "problems": problems,
        },
        status_code=422,
    )


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse(
        {"error": str(exc.detail), "hint": None, "problems": []},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.VMDeskError, _vmdesk_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
