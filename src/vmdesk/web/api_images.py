"""/api/images: the image catalog with what is cached, and pulls run as jobs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from vmdesk.core.errors import ConfigError, Problem
from vmdesk.core.units import human_size
from vmdesk.service import images
from vmdesk.service.jobs import Job
from vmdesk.web.context import Ctx

router = APIRouter(prefix="/api/images", tags=["images"])


class PullRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="a catalog image (see GET /api/images)")
    url: str | None = Field(default=None, description="or an image's https URL (needs digest)")
    digest: str | None = Field(default=None, description="sha256:HEX or sha512:HEX")
    arch: str | None = Field(default=None, description="a catalog image's architecture")


@router.get("", summary="The image catalog with what is cached, and images pulled from URLs")
def list_images(arch: str | None = None) -> dict[str, Any]:
    return {"catalog": images.catalog(arch), "pulled": images.pulled()}


@router.post(
    "/pull",
    status_code=202,
    summary="Pull an image into the cache (202 with a job; 200 when it is cached already)",
)
def pull_image(ctx: Ctx, body: PullRequest) -> Any:
    if (body.name is None) == (body.url is None):
        raise ConfigError(
            [Problem("name", "give either name or url", "name a catalog image, or give url")]
        )
    ref = body.name or body.url or ""
    # Resolved here, so a reference that cannot be pulled is refused (422) before any job.
    source = images.source(ref, body.arch, body.digest)
    if source.path.is_file():
        return JSONResponse({"cached": True, "path": str(source.path)}, status_code=200)

    def work(job: Job) -> dict[str, Any]:
        job.report(f"downloading {source.name}", 0)

        def progress(done: int, total: int | None) -> None:
            shown = f"{human_size(done)} of {human_size(total)}" if total else human_size(done)
            job.report(f"{source.name}: {shown}", 100 * done / total if total else None)

        path = images.pull(ref, body.arch, body.digest, progress=progress)
        return {"cached": True, "path": str(path), "size": path.stat().st_size}

    job = ctx.jobs.start("pull", work)
    return JSONResponse(
        {"job": job.as_dict()}, status_code=202, headers={"location": f"/api/jobs/{job.id}"}
    )
