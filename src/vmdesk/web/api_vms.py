"""/api/vms: the library's VMs, their lifecycle, snapshots, disks, screen and logs."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from vmdesk.core import hosts
from vmdesk.core.units import human_size, parse_size
from vmdesk.service import lifecycle, storage, vms
from vmdesk.service import memory as vm_memory
from vmdesk.service.jobs import Job
from vmdesk.web.context import Context, Ctx
from vmdesk.web.hot_path import LIST_MAX_AGE
from vmdesk.web.models import (
    CloneRequest,
    CreateRequest,
    DiskRequest,
    MemoryRequest,
    SnapshotRequest,
    StopRequest,
)

router = APIRouter(prefix="/api/vms", tags=["vms"])

JOB_WAIT = 2.0  # a job done within this answers at once; a longer one answers 202


def _row(ctx: Context, ref: str) -> dict[str, Any]:
    """The VM's row as the library lists it: a VM on a host is not in the desk's status
    watch, so its row is asked of its host."""
    host, name = hosts.split(ref)
    if host is not None:
        rows = vms.on_host(ctx.library, host)
        fallback = {"name": name, "host": host, **lifecycle.status(ctx.library, ref)}
    else:
        rows, fallback = ctx.watch.rows(max_age=0), {"name": name}
    return next((dict(row) for row in rows if row["name"] == name), fallback)


def _job_response(job: Job, ok_status: int) -> Any:
    """The job's result if it finished quickly (its error raised as if done here), else
    202 with the job to poll at /api/jobs/{id}."""
    if job.done.wait(JOB_WAIT):
        if job.exception is not None:
            raise job.exception
        return JSONResponse(job.result, status_code=ok_status)
    return JSONResponse(
        {"job": job.as_dict()}, status_code=202, headers={"location": f"/api/jobs/{job.id}"}
    )


@router.get(
    "",
    summary="List the VMs with their live status",
    response_class=Response,
    responses={200: {"content": {"application/json": {"schema": {"type": "array"}}}}},
)
async def list_vms(request: Request) -> Response:
    # Usually answered before this by hot_path.CachedList; here it waits for a read of
    # the library begun after the last change made through this app (see StatusWatch).
    ctx: Context = request.app.state.vmdesk
    body = await ctx.watch.rows_json(LIST_MAX_AGE)
    return Response(body, media_type="application/json")


@router.post(
    "",
    status_code=201,
    summary="Create a VM (202 with a job when building its image takes a while)",
)
def create_vm(ctx: Ctx, body: CreateRequest) -> Any:
    def work(job: Job) -> dict[str, Any]:
        config = vms.create(
            ctx.library, body.config, image=body.image, settings=body.settings,
            progress=lambda m: job.report(m),
            pull_progress=lambda done, total: job.report(
                _downloading(str(body.image), done, total), 100 * done / total if total else None),
            host=body.host,
            upload=lambda file, done, total: job.report(
                _uploading(file, str(body.host), done, total), 100 * done / max(total, 1)),
        )  # fmt: skip
        ref = f"{body.host}:{config.name}" if body.host else config.name
        ctx.watch.invalidate()
        if body.start:
            job.report("starting the VM")
            lifecycle.start(ctx.library, ref)
            ctx.watch.invalidate()
        return vms.get(ctx.library, ref)

    return _job_response(ctx.jobs.start("create", work), 201)


def _downloading(image: str, done: int, total: int | None) -> str:
    """A download's progress for people, as the image pull job says it."""
    of = f" of {human_size(total)}" if total else ""
    return f"downloading {image}: {human_size(done)}{of}"


def _uploading(file: str, host: str, done: int, total: int) -> str:
    return f"uploading {file} to host {host}: {human_size(done)} of {human_size(total)}"


@router.get("/{name}", summary="A VM's description, status and runtime facts")
def get_vm(ctx: Ctx, name: str) -> dict[str, Any]:
    return vms.get(ctx.library, name)


@router.patch("/{name}", summary="Change a stopped VM's description (a JSON merge patch)")
def edit_vm(ctx: Ctx, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    config = vms.edit(ctx.library, name, patch)
    ctx.watch.invalidate()
    return vms.get(ctx.library, config.name)


@router.delete("/{name}", status_code=204, summary="Delete a stopped VM with all its files")
def delete_vm(ctx: Ctx, name: str) -> Response:
    vms.delete(ctx.library, name)
    ctx.watch.invalidate()
    return Response(status_code=204)


@router.post(
    "/{name}/clone",
    status_code=201,
    summary="Clone a stopped VM (202 with a job while its disks are copied)",
)
def clone_vm(ctx: Ctx, name: str, body: CloneRequest) -> Any:
    def work(job: Job) -> dict[str, Any]:
        job.report("copying disks", 0)
        config = vms.clone(
            ctx.library, name, body.name, linked=body.linked, forwards=body.forwards,
            progress=lambda done, total: job.report(progress=100 * done / max(total, 1)),
        )  # fmt: skip
        ctx.watch.invalidate()
        host, _ = hosts.split(name)  # a clone is made where its source is
        return vms.get(ctx.library, f"{host}:{config.name}" if host else config.name)

    return _job_response(ctx.jobs.start("clone", work), 201)


# -- lifecycle ----------------------------------------------------------------------------


@router.post("/{name}/start", summary="Start (or resume a suspended) VM")
def start_vm(ctx: Ctx, name: str) -> dict[str, Any]:
    report = lifecycle.start(ctx.library, name)
    ctx.watch.invalidate()
    return {**_row(ctx, name), "already_running": bool(report.get("already_running")),
            "resumed": bool(report.get("resumed")), "accel": report.get("accel")}  # fmt: skip


@router.post("/{name}/stop", summary="The power button, forced after a timeout")
def stop_vm(ctx: Ctx, name: str, body: StopRequest | None = None) -> dict[str, Any]:
    body = body or StopRequest()
    reply = lifecycle.stop(ctx.library, name, force=body.force, timeout=body.timeout)
    ctx.watch.invalidate()
    return {**_row(ctx, name), **reply}


@router.post("/{name}/kill", summary="Pull the plug at once")
def kill_vm(ctx: Ctx, name: str) -> dict[str, Any]:
    lifecycle.kill(ctx.library, name)
    ctx.watch.invalidate()
    return _row(ctx, name)


@router.post("/{name}/suspend", summary="Save the VM's state to its bundle and stop it")
def suspend_vm(ctx: Ctx, name: str) -> dict[str, Any]:
    reply = lifecycle.suspend(ctx.library, name)
    ctx.watch.invalidate()
    return {**_row(ctx, name), **reply}


def _simple_action(action: str) -> None:
    def handler(ctx: Ctx, name: str) -> dict[str, Any]:
        lifecycle.simple(ctx.library, name, action)
        ctx.watch.invalidate()
        return _row(ctx, name)

    summary = {"pause": "Pause the VM's vCPUs", "resume": "Resume a paused VM",
               "reboot": "Reset the VM (like the reset button)"}[action]  # fmt: skip
    router.post(f"/{{name}}/{action}", summary=summary, name=f"{action}_vm")(handler)


for _action in lifecycle.SIMPLE_ACTIONS:
    _simple_action(_action)


# -- snapshots and disks ------------------------------------------------------------------


@router.get("/{name}/memory", summary="A running VM's memory: the guest's and the host's view")
def memory(ctx: Ctx, name: str) -> dict[str, Any]:
    return vm_memory.memory(ctx.library, name)


@router.put("/{name}/memory", summary="Give a running guest less (or back up to its boot size)")
def set_memory(ctx: Ctx, name: str, body: MemoryRequest) -> dict[str, Any]:
    return vm_memory.set_memory(ctx.library, name, body.memory)


@router.get("/{name}/snapshots", summary="The VM's snapshots (a tree by parent)")
def snapshot_tree(ctx: Ctx, name: str) -> dict[str, Any]:
    return storage.snapshot_tree(ctx.library, name)


@router.post("/{name}/snapshots", status_code=201, summary="Snapshot the VM")
def snapshot_create(ctx: Ctx, name: str, body: SnapshotRequest | None = None) -> dict[str, Any]:
    body = body or SnapshotRequest()
    snap = storage.snapshot_create(ctx.library, name, body.name, disk_only=body.disk_only)
    return snap.__dict__


@router.post("/{name}/snapshots/{snapshot}/revert", summary="Go back to a snapshot")
def snapshot_revert(ctx: Ctx, name: str, snapshot: str) -> dict[str, Any]:
    return storage.snapshot_revert(ctx.library, name, snapshot).__dict__


@router.delete("/{name}/snapshots/{snapshot}", status_code=204, summary="Delete a snapshot")
def snapshot_delete(ctx: Ctx, name: str, snapshot: str) -> Response:
    storage.snapshot_delete(ctx.library, name, snapshot)
    return Response(status_code=204)


@router.get("/{name}/disks", summary="The VM's disks and what their images are")
def disk_list(ctx: Ctx, name: str) -> list[dict[str, Any]]:
    return [storage.disk_row(d) for d in storage.attached_disks(ctx.library, name)]


@router.post("/{name}/disks", status_code=201, summary="Add a new empty disk to a stopped VM")
def disk_add(ctx: Ctx, name: str, body: DiskRequest) -> dict[str, Any]:
    size = parse_size(body.size, default_unit="G")
    disk, info = storage.disk_add(ctx.library, name, size, body.format, body.interface)
    return {**disk.model_dump(mode="json"), "image": info.as_dict()}


@router.post(
    "/{name}/disks/compact",
    summary="Reclaim the host space a stopped VM's disks hold in zeroed blocks "
    "(202 with a job while it runs)",
)
def disks_compact(ctx: Ctx, name: str) -> Any:
    return _compact_job(ctx, name, None)


@router.post(
    "/{name}/disks/{disk}/compact",
    summary="Reclaim the host space one disk (its index or file name) of a stopped VM holds "
    "in zeroed blocks (202 with a job while it runs)",
)
def disk_compact(ctx: Ctx, name: str, disk: str) -> Any:
    return _compact_job(ctx, name, disk)


def _compact_job(ctx: Context, name: str, which: str | None) -> Any:
    def work(job: Job) -> dict[str, Any]:
        job.report("compacting disks", 0)
        report = storage.disk_compact(ctx.library, name, which, progress=job.report)
        return report.as_dict()

    return _job_response(ctx.jobs.start("compact", work), 200)


# -- screen and logs ----------------------------------------------------------------------


@router.get(
    "/{name}/screenshot",
    summary="A PNG of the running VM's screen",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def screenshot(ctx: Ctx, name: str) -> Response:
    png = lifecycle.screenshot_png(ctx.library, name)  # a VM's host is asked when it has one
    return Response(png, media_type="image/png", headers={"cache-control": "no-store"})


@router.get("/{name}/logs", summary="A log of the VM as text", response_class=PlainTextResponse)
def logs(
    ctx: Ctx,
    name: str,
    kind: Literal["serial", "engine", "events"] = "serial",
    tail: int | None = Query(default=None, ge=0, le=100_000, description="last N lines"),
) -> PlainTextResponse:
    text = lifecycle.log_text(ctx.library, name, kind, tail)
    return PlainTextResponse(text, headers={"cache-control": "no-store"})
