"""/api/images over the live server: the catalog with its cached state, and a pull from a
local HTTP server run as a job whose progress can be watched."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.unit.test_downloads import FileServer

SIZE = 8 << 20


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VMDESK_CACHE", str(tmp_path / "cache"))  # the server runs in-process
    return tmp_path / "cache"


@pytest.fixture
def files() -> Iterator[tuple[FileServer, bytes]]:
    data = os.urandom(SIZE)
    served = FileServer({"/disk.qcow2": data})
    yield served, data
    served.close()


def _wait(api: httpx.Client, job_id: str) -> tuple[dict[str, Any], list[float]]:
    seen: list[float] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = api.get(f"/api/jobs/{job_id}").json()
        if job["progress"] is not None:
            seen.append(job["progress"])
        if job["state"] != "running":
            return job, seen
        time.sleep(0.05)
    raise AssertionError("the pull did not finish")


def test_catalog_lists_every_image_and_arch_uncached(api: httpx.Client, cache: Path) -> None:
    listed = api.get("/api/images").json()
    names = {(row["name"], row["arch"]) for row in listed["catalog"]}
    assert ("ubuntu-24.04", "x86_64") in names and ("fedora-42", "aarch64") in names
    assert len(names) == len(listed["catalog"]) == 8
    assert not any(row["cached"] for row in listed["catalog"]) and listed["pulled"] == []
    only = api.get("/api/images", params={"arch": "arm64"}).json()["catalog"]
    assert {row["arch"] for row in only} == {"aarch64"}


def test_pull_runs_as_a_job_with_progress(
    api: httpx.Client, cache: Path, files: tuple[FileServer, bytes]
) -> None:
    server, data = files
    server.pace = 0.01  # ~6 MiB/s: slow enough to see the job between start and end
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    body = {"url": server.url("/disk.qcow2"), "digest": digest}
    started = api.post("/api/images/pull", json=body)
    assert started.status_code == 202, started.text
    job, seen = _wait(api, started.json()["job"]["id"])
    assert job["state"] == "done", job
    assert any(0 < p < 100 for p in seen) and seen == sorted(seen)
    path = Path(job["result"]["path"])
    assert path.read_bytes() == data and path.is_relative_to(cache)

    [pulled] = api.get("/api/images").json()["pulled"]
    assert pulled["path"] == str(path) and pulled["size"] == SIZE
    again = api.post("/api/images/pull", json=body)
    assert again.status_code == 200 and again.json() == {"cached": True, "path": str(path)}
    assert len(server.requests) == 1


def test_pull_errors_keep_their_kind(
    api: httpx.Client, cache: Path, files: tuple[FileServer, bytes]
) -> None:
    server, _ = files
    no_digest = api.post("/api/images/pull", json={"url": server.url("/disk.qcow2")})
    assert no_digest.status_code == 422 and "--digest" in no_digest.json()["hint"]
    unknown = api.post("/api/images/pull", json={"name": "plan9-4"})
    assert unknown.status_code == 404 and unknown.json()["kind"] == "NotFound"
    both = api.post("/api/images/pull", json={"name": "debian-12", "url": "https://x/y"})
    assert both.status_code == 422

    missing = {"url": server.url("/gone.qcow2"), "digest": "sha256:" + "0" * 64}
    started = api.post("/api/images/pull", json=missing)
    assert started.status_code == 202
    job, _ = _wait(api, started.json()["job"]["id"])
    assert job["state"] == "failed" and job["error"]["kind"] == "DownloadError"
    assert "(HTTP 404)" in job["error"]["error"] and job["error"]["hint"]
