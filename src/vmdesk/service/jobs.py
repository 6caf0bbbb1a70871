"""Long operations (building an image, cloning disks) run in the background as jobs whose
progress can be asked for while they run."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from vmdesk.core.errors import ConfigError, VMDeskError

JobState = Literal["running", "done", "failed"]
KEPT = 100  # finished jobs remembered (oldest forgotten first)


@dataclass
class Job:
    id: str
    kind: str
    state: JobState = "running"
    progress: float | None = None  # percent, when the operation can tell
    message: str = ""
    result: Any = None
    error: dict[str, Any] | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    exception: BaseException | None = field(default=None, repr=False)
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    def report(self, message: str | None = None, progress: float | None = None) -> None:
        """Called by the operation as it goes."""
        if message is not None:
            self.message = message
        if progress is not None:
            self.progress = round(max(0.0, min(100.0, progress)), 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "progress": self.progress,
            "message": self.message,
            "result": self.result,
            "error": self.error,
            "started": self.started,
            "finished": self.finished,
        }


def error_body(exc: VMDeskError) -> dict[str, Any]:
    """How an error is told to an API client: the CLI's message and hint, and its kind
    (the error's class, e.g. Conflict, as the supervisor's protocol carries it)."""
    problems = [p.as_dict() for p in exc.problems] if isinstance(exc, ConfigError) else []
    return {"error": exc.message, "hint": exc.hint, "kind": type(exc).__name__,
            "problems": problems}  # fmt: skip


class Jobs:
    """The jobs of one process (a web server): started, looked up, waited for."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, kind: str, work: Callable[[Job], Any]) -> Job:
        """Run ``work(job)`` in a thread; its return value becomes the job's result."""
        job = Job(secrets.token_hex(8), kind)
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.state != "running"]
            for old in sorted(finished, key=lambda j: j.started)[: max(0, len(finished) - KEPT)]:
                del self._jobs[old.id]
        threading.Thread(target=self._run, args=(job, work), daemon=True, name=kind).start()
        return job

    def _run(self, job: Job, work: Callable[[Job], Any]) -> None:
        try:
            job.result = work(job)
            job.state = "done"
            job.progress = 100.0
        except VMDeskError as exc:
            job.exception = exc
            job.error = error_body(exc)
            job.state = "failed"
        except Exception as exc:  # a bug: say so in the job rather than lose it
            job.exception = exc
            job.error = {"error": f"{type(exc).__name__}: {exc}", "hint": None, "problems": []}
            job.state = "failed"
        finally:
            job.finished = time.time()
            job.done.set()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)
