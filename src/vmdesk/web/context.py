"""What every request handler of one web app shares: the library, jobs, the status watch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import Depends, Request

from vmdesk.core.library import Library
from vmdesk.service import library as service_library
from vmdesk.service.jobs import Jobs
from vmdesk.web.events import StatusWatch


@dataclass
class Context:
    library: Library
    jobs: Jobs = field(default_factory=Jobs)
    watch: StatusWatch = field(init=False)
    # Threads for calls that wait on a guest's agents (a clipboard long poll per open
    # console): their own, so they never hold the threads the other routes run in.
    agent_calls: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(32))

    def __post_init__(self) -> None:
        self.watch = StatusWatch(self.library)

    @classmethod
    def open(cls, library_root: Path | None) -> Context:
        return cls(service_library.open(library_root))


async def context(request: Request) -> Context:
    """FastAPI dependency: the app's shared context (async: no worker thread per request)."""
    found: Context = request.app.state.vmdesk
    return found


Ctx = Annotated[Context, Depends(context)]
