"""/api/vms/{name}/...: inside a running guest, through its agents (vmdesk.service.guest):
what its guest agent says, commands, the clipboard both ways and the display's size.

Each call waits on the guest, some for long (a clipboard long poll, a command): they run in
threads of their own (Context.agent_calls), never in the ones the other routes use."""

from __future__ import annotations

import base64
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from vmdesk.service import guest, lifecycle
from vmdesk.web.context import Context, Ctx
from vmdesk.web.models import MAX_DATA, ClipboardRequest, DisplayRequest, ExecRequest, Selection

router = APIRouter(prefix="/api/vms", tags=["guest"])

# A JSON offer is its data in base64 and a few fields.
MAX_BODY = (MAX_DATA + 2) // 3 * 4 + 4096
T = TypeVar("T")


async def _agent_call(ctx: Context, work: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(work, limiter=ctx.agent_calls)


@router.get("/{name}/guest", summary="What the guest agent says: OS, host name, addresses")
async def guest_info(
    ctx: Ctx,
    name: str,
    wait: float = Query(default=2.0, ge=0, le=30, description="seconds to wait for the agent"),
) -> dict[str, Any]:
    # as `vmdesk ip NAME --json --wait W` says it: agent "not answering" is an answer too
    return await _agent_call(ctx, partial(guest.info, ctx.library, name, wait))


def _encoded(stdout: bytes, stderr: bytes, want: str) -> dict[str, str]:
    """The command's output as text when asked and it is UTF-8, else base64."""
    if want == "text":
        try:
            return {"encoding": "text", "stdout": stdout.decode(), "stderr": stderr.decode()}
        except UnicodeDecodeError:
            pass  # binary output: base64, as "encoding" says
    b64 = base64.b64encode
    return {"encoding": "base64", "stdout": b64(stdout).decode(), "stderr": b64(stderr).decode()}


@router.post("/{name}/exec", summary="Run a command in the guest through its guest agent")
async def exec_command(ctx: Ctx, name: str, body: ExecRequest) -> dict[str, Any]:
    run = partial(guest.run, ctx.library, name, body.argv, stdin=body.stdin, timeout=body.timeout)
    done = await _agent_call(ctx, run)
    return {"exit_code": done["exit_code"], "signal": done["signal"],
            "truncated": done["truncated"],
            **_encoded(done["stdout"], done["stderr"], body.output)}  # fmt: skip


# -- the clipboard ------------------------------------------------------------------------


@router.get("/{name}/clipboard", summary="The guest's clipboard (data null when it is empty)")
async def get_clipboard(
    ctx: Ctx,
    name: str,
    type: str = Query(default="", max_length=100, description="the MIME type to ask for"),
    selection: Selection = "clipboard",
    wait: float = Query(default=10.0, ge=0, le=60, description="seconds to wait"),
) -> dict[str, Any]:
    read = partial(guest.clipboard, ctx.library, name, kind=type, selection=selection, wait=wait)
    kind, data, owner = await _agent_call(ctx, read)
    encoded = None if data is None else base64.b64encode(data).decode("ascii")
    return {"type": kind, "data": encoded, "owner": owner}


_OFFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ClipboardRequest.model_json_schema()},
            "text/plain": {"schema": {"type": "string", "description": "text to offer"}},
        },
    }
}


@router.put(
    "/{name}/clipboard",
    summary="Offer the guest a clipboard: JSON {type, data (base64)} or a text/plain body",
    openapi_extra=_OFFER_BODY,
)
async def set_clipboard(ctx: Ctx, name: str, request: Request) -> dict[str, Any]:
    offer = _offer(request.headers.get("content-type", ""), await _body(request))
    send = partial(guest.set_clipboard, ctx.library, name, offer.data, kind=offer.type,
                   selection=offer.selection)  # fmt: skip
    # delivered: the guest's agent heard it now (else it gets the offer when it comes)
    delivered = await _agent_call(ctx, send)
    return {"delivered": delivered, "type": offer.type, "size": len(offer.data)}


async def _body(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise HTTPException(413, f"a clipboard offer is at most {MAX_DATA >> 20} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _offer(content_type: str, body: bytes) -> ClipboardRequest:
    """The offer in a JSON body, or a text/plain one (in its charset, UTF-8 by default)."""
    media, *params = (part.strip().lower() for part in content_type.split(";"))
    if media == "text/plain":
        named = [p.removeprefix("charset=").strip('"') for p in params if p.startswith("charset=")]
        charset = named[0] if named else "utf-8"
        try:
            text = body.decode(charset)
        except (LookupError, UnicodeDecodeError):
            raise RequestValidationError(
                [{"loc": ("body",), "msg": f"is not {charset} text", "type": "value_error"}]
            ) from None
        return ClipboardRequest.model_construct(
            type="text/plain;charset=utf-8", data=text.encode(), selection="clipboard"
        )
    if media not in ("", "application/json") and not media.endswith("+json"):
        raise HTTPException(415, "send JSON {type, data} or a text/plain body")
    try:
        return ClipboardRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


@router.get(
    "/{name}/clipboard/watch",
    summary="Wait until the guest's clipboard changes after generation `seen` (a long poll)",
)
async def watch_clipboard(
    ctx: Ctx,
    name: str,
    seen: int = Query(default=-1, ge=-1, le=2**53, description="the last generation seen"),
    wait: float = Query(default=25.0, ge=0, le=60, description="seconds to wait at most"),
) -> dict[str, Any]:
    """``generation``, ``owner`` and ``types`` of the guest's clipboard, and which agents
    answer now (``agents``): a page learns of the SPICE agent coming and going here too."""

    def work() -> dict[str, Any]:
        found = guest.watch_clipboard(ctx.library, name, seen, wait)
        agents = lifecycle.status(ctx.library, name).get("agents") or {}
        return {"generation": found["generation"], "owner": found["owner"],
                "types": found["types"], "agents": agents}  # fmt: skip

    return await _agent_call(ctx, work)


# -- the display --------------------------------------------------------------------------


@router.post("/{name}/display", summary="Resize a running guest's display (its SPICE agent)")
async def display_size(ctx: Ctx, name: str, body: DisplayRequest) -> dict[str, Any]:
    # delivered: the agent heard it now (else it is sent whenever the agent comes)
    resize = partial(guest.resize, ctx.library, name, body.width, body.height)
    delivered = await _agent_call(ctx, resize)
    return {"width": body.width, "height": body.height, "delivered": delivered}
