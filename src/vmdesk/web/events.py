"""Status changes of the library's VMs, for server-sent events and a cheap VM list.

One poll of the library (every half second, only while someone listens) serves every
listener; GET /api/vms reuses a fresh poll instead of reading every bundle again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from vmdesk.core.library import Library
from vmdesk.service import lifecycle, vms

INTERVAL = 0.5


def event(row: dict[str, Any], kind: str) -> dict[str, Any]:
    """One server-sent event: the VM, its status, what happened (current, added, status,
    removed) and, for a VM that crashed or failed to start, why."""
    found = {"vm": row["name"], "status": row.get("status"), "event": kind}
    if row.get("reason"):
        found["reason"] = row["reason"]
    return found


class StatusWatch:
    def __init__(self, library: Library, interval: float = INTERVAL) -> None:
        self.library = library
        self.interval = interval
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None
        self._rows: list[dict[str, Any]] = []
        self._json = b"[]"
        self._rows_at = 0.0  # monotonic time of the last poll
        self._reading: asyncio.Future[list[dict[str, Any]]] | None = None
        self._generation = 0  # how many changes were made through this app
        self._reading_generation = 0
        self._stored_generation = -1  # the generation the stored list was read in

    # -- the list, cached for a moment --------------------------------------------------

    def invalidate(self) -> None:
        """Something changed a VM: the next list reads the library again (a read already
        under way may have missed the change, so it no longer counts as fresh)."""
        self._generation += 1

    def rows(self, max_age: float) -> list[dict[str, Any]]:
        """The VM list, from a poll at most ``max_age`` seconds old (blocking)."""
        stale = time.monotonic() - self._rows_at > max_age
        if stale or self._stored_generation != self._generation:
            generation = self._generation
            rows = vms.summaries(self.library)
            self._store(rows, generation)
            return rows
        return self._rows

    async def rows_json(self, max_age: float) -> bytes:
        """The VM list as JSON. A list older than ``max_age`` seconds is still served while
        one background read refreshes it (a busy server never makes its clients wait for
        a poll); only after a change made through this app does a caller wait, for a read
        begun after that change. Concurrent callers share one read of the library."""
        cached = self.cached_json(max_age)
        if cached is not None:
            return cached
        # Until a read begun after the last change has stored its list (an older one that
        # ends meanwhile stores nothing: see _store).
        while self._stored_generation != self._generation:
            await asyncio.shield(self._refresh())
        return self._json

    def cached_json(self, max_age: float) -> bytes | None:
        """The stored VM list as JSON, unless a change made through this app came after it
        (None: await :meth:`rows_json`). Older than ``max_age``: a refresh starts."""
        if self._stored_generation != self._generation:
            return None
        if time.monotonic() - self._rows_at > max_age:
            self._refresh()
        return self._json

    def _refresh(self) -> asyncio.Future[list[dict[str, Any]]]:
        """The read of the library under way for the current generation (started if none)."""
        if self._reading is None or self._reading_generation != self._generation:
            reading = asyncio.ensure_future(self._read())
            self._reading, self._reading_generation = reading, self._generation
            reading.add_done_callback(self._read_done)
        return self._reading

    def _read_done(self, reading: asyncio.Future[list[dict[str, Any]]]) -> None:
        if self._reading is reading:
            self._reading = None
        if not reading.cancelled():
            reading.exception()  # retrieved here; a waiting caller gets it from shield()

    def _store(self, rows: list[dict[str, Any]], generation: int) -> None:
        if generation != self._generation:
            return  # begun before a change, ended after it: never let it replace a newer read
        self._rows = rows
        self._json = json.dumps(rows).encode()
        self._rows_at = time.monotonic()
        self._stored_generation = generation

    # -- listeners ----------------------------------------------------------------------

    def listen(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._listeners.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll())
        return queue

    def unlisten(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._listeners.discard(queue)

    async def _poll(self) -> None:
        previous = {r["name"]: r for r in await self._read()}
        while self._listeners:
            await asyncio.sleep(self.interval)
            current = {r["name"]: r for r in await self._read()}
            for name, row in current.items():
                if name not in previous:
                    self._send(event(row, "added"))
                elif previous[name].get("status") != row.get("status"):
                    self._send(event(row, "status"))
            for name in previous.keys() - current.keys():
                self._send({"vm": name, "status": None, "event": "removed"})
            previous = current
        self._task = None

    async def _read(self) -> list[dict[str, Any]]:
        generation = self._generation
        rows = await asyncio.to_thread(vms.summaries, self.library)
        self._store(rows, generation)
        lifecycle.reap()  # supervisors started by this server that have ended
        return rows

    def _send(self, event: dict[str, Any]) -> None:
        for queue in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):  # a stuck listener misses events
                queue.put_nowait(event)
