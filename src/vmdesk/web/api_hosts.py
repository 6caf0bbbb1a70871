"""/api/hosts: the libvirt hosts the library knows, and the VMs on each."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from vmdesk.service import remote, vms
from vmdesk.web.context import Ctx
from vmdesk.web.models import HostRequest

router = APIRouter(prefix="/api/hosts", tags=["hosts"])


@router.get("", summary="Each host: reachable or not (and why), its facts, how many VMs")
def list_hosts(ctx: Ctx) -> list[dict[str, Any]]:
    return remote.host_rows(ctx.library)


@router.post("", status_code=201, summary="Add a host once it answers (502 when it does not)")
def add_host(ctx: Ctx, body: HostRequest) -> dict[str, Any]:
    return remote.add_host(ctx.library, body.name, body.uri, body.accel)


@router.delete("/{name}", status_code=204, summary="Forget a host (its VMs stay on it)")
def remove_host(ctx: Ctx, name: str) -> Response:
    remote.remove_host(ctx.library, name)
    return Response(status_code=204)


@router.get("/{name}/vms", summary="The host's VMs (502 when it does not answer)")
def host_vms(ctx: Ctx, name: str) -> list[dict[str, Any]]:
    return vms.on_host(ctx.library, name)
