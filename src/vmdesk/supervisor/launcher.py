"""The supervisor's first moments, kept free of asyncio: take the bundle, check the VM,
spawn the hypervisor, and only then import the event-loop machinery that serves it.

Everything done before the hypervisor spawns is added to the guest's boot time.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmdesk.core import isolation
from vmdesk.core.bundle import Bundle
from vmdesk.core.errors import Conflict, VMDeskError
from vmdesk.core.layout import Sockets
from vmdesk.supervisor import status as vmstatus

Report = Callable[[dict[str, Any]], None]


def _reporter(ready_fd: int | None) -> Report:
    """Tell the starting CLI, once, whether the VM runs (a pipe it reads)."""
    sent = False

    def report(message: dict[str, Any]) -> None:
        nonlocal sent
        if sent or ready_fd is None:
            return
        sent = True
        with contextlib.suppress(OSError):
            os.write(ready_fd, json.dumps(message).encode() + b"\n")
            os.close(ready_fd)

    return report


def main(args: list[str]) -> int:
    bundle = Bundle(Path(args[0]))
    ready_fd = int(args[args.index("--ready-fd") + 1]) if "--ready-fd" in args else None
    report = _reporter(ready_fd)
    try:
        lock = bundle.lock(f"running the VM (supervisor pid {os.getpid()})")
        lock.__enter__()
    except Conflict as exc:
        report({"ok": False, "already_running": True, "error": exc.message})
        return 0
    sockets: Sockets | None = None
    try:
        vmstatus.clean_stale(bundle.path)
        with contextlib.suppress(FileNotFoundError):
            bundle.files.last_exit.unlink()
        config = bundle.load()
        isolation.enforce(config, bundle.path)
        sockets = Sockets(bundle.files.sockets(str(config.uuid)))
        sockets.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        bundle.files.supervisor_pid.write_text(f"{os.getpid()}\n")

        from vmdesk.engines.registry import engine_for

        session = engine_for(config).session(config, bundle.path, sockets.dir)
        session.launch()
        bundle.files.engine_pid.write_text(f"{session.pid}\n")

        import asyncio  # only now: the guest is already booting

        from vmdesk.supervisor.daemon import Supervisor

        supervisor = Supervisor(bundle, config, session, report)
        try:
            return asyncio.run(supervisor.run())
        finally:
            supervisor.close()
    except VMDeskError as exc:
        vmstatus.record_exit(bundle.path, "failed", exc.message, exc.hint or "")
        report({"ok": False, "error": exc.message, "hint": exc.hint})
        return 1
    except BaseException as exc:
        reason = f"the supervisor failed: {type(exc).__name__}: {exc}"
        vmstatus.record_exit(bundle.path, "failed", reason)
        report({"ok": False, "error": reason})
        print(reason, file=sys.stderr)
        raise
    finally:
        vmstatus.remove_run_files(bundle.files, sockets)
        lock.__exit__(None, None, None)
