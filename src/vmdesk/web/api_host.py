"""/api: the host's facts, the description schema, validation, jobs and status events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from functools import cache
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.exceptions import HTTPException

from vmdesk.service import host, vms
from vmdesk.web.context import Ctx
from vmdesk.web.events import event
from vmdesk.web.models import ValidateRequest

router = APIRouter(prefix="/api", tags=["host"])

KEEPALIVE = 15.0  # seconds between SSE comments, so proxies and browsers keep the stream


@cache
def _host_facts() -> dict[str, Any]:
    """Cached for the server's life: the accelerator probe runs at most once."""
    return host.facts()


@router.get("/host", summary="CPUs, memory, guest architectures and their accelerators")
def host_facts() -> dict[str, Any]:
    return _host_facts()


@router.get("/doctor", summary="Whether this host can run VMs, and what to install if not")
def doctor() -> dict[str, Any]:
    # No accelerator probe: it may boot a guest, and a page waits for this answer.
    checks = host.doctor(probe=False)
    return {"ready": not host.blocking(checks), "checks": [c.as_dict() for c in checks]}


@router.get("/schema", summary="The JSON Schema of a VM description")
def schema() -> dict[str, Any]:
    return vms.schema()


@router.post("/validate", summary="Every problem with a description as a new VM")
def validate(ctx: Ctx, body: ValidateRequest) -> dict[str, Any]:
    problems = vms.validate(ctx.library, body.config)
    return {"problems": [p.as_dict() for p in problems]}


@router.get("/jobs/{job_id}", summary="A long operation's state, progress and result")
def job(ctx: Ctx, job_id: str) -> dict[str, Any]:
    found = ctx.jobs.get(job_id)
    if found is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return found.as_dict()


@router.get(
    "/events",
    summary="Server-sent events: one per VM status change",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(ctx: Ctx) -> StreamingResponse:
    queue = ctx.watch.listen()

    async def stream() -> AsyncIterator[str]:
        try:
            rows = await asyncio.to_thread(ctx.watch.rows, 0.0)
            for row in rows:  # where everything stands now
                yield _sse(event(row, "current"))
            while True:
                try:
                    change = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                yield _sse(change)
        finally:
            ctx.watch.unlisten(queue)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"cache-control": "no-store"}
    )


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"
