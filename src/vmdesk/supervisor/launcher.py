"""The supervisor's first moments, kept free of asyncio: take the bundle, check the VM,
spawn the hypervisor, and only then import the event-loop machinery that serves it.

Everything done before the hypervisor spawns is added to the guest's boot time, so when a
saved launch plan still holds (launch_plan.py) the hypervisor is spawned from it before the
config model is even imported; the VM is then checked in full while it boots.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from vmdesk.core import processes
from vmdesk.core.bundle import Bundle
from vmdesk.core.errors import Conflict, EngineError, VMDeskError
from vmdesk.core.layout import Layout, Sockets
from vmdesk.supervisor import launch_plan
from vmdesk.supervisor import status as vmstatus

TYPE_CHECKING = False  # not typing's: `typing` stays off the VM start path
if TYPE_CHECKING:
    from typing import Any

    Report = Callable[[dict[str, Any]], None]


def _reporter(ready_fd: int | None) -> Report:
    """Tell the starting CLI, once, whether the VM runs (a pipe it reads): the hello, with
    this supervisor's protocol version and, when the VM did not start, the error's kind."""
    sent = False

    def report(message: dict[str, Any]) -> None:
        nonlocal sent
        if sent or ready_fd is None:
            return
        sent = True
        from vmdesk.supervisor import protocol  # after the spawn: off the guest's boot time

        hello = {**message, "protocol": protocol.PROTOCOL_VERSION}
        with contextlib.suppress(OSError):
            os.write(ready_fd, json.dumps(hello).encode() + b"\n")
            os.close(ready_fd)

    return report


def _read_config(files: Layout) -> bytes:
    try:
        return files.config.read_bytes()
    except OSError:
        return b""  # Bundle.load() explains what is wrong


def _same_launch(a: dict[str, Any], b: dict[str, Any] | None) -> bool:
    """Whether two launch specs run the same thing (the accelerator's reason is prose)."""
    return b is not None and {**a, "accel_reason": ""} == {**b, "accel_reason": ""}


def _discard(replayed: launch_plan.Replayed | None) -> None:
    if replayed is not None:
        replayed.discard()


def main(args: list[str]) -> int:
    bundle = Bundle(Path(args[0]))
    files = bundle.files
    ready_fd = int(args[args.index("--ready-fd") + 1]) if "--ready-fd" in args else None
    if ready_fd is not None:  # the CLI's end of start-up only; never the hypervisor's
        os.set_inheritable(ready_fd, False)
    report = _reporter(ready_fd)
    try:
        lock = bundle.lock(f"running the VM (supervisor pid {os.getpid()})")
        lock.__enter__()
    except Conflict as exc:
        report({"ok": False, "already_running": True, **exc.to_wire()})
        return 0
    sockets: Sockets | None = None
    replayed: launch_plan.Replayed | None = None
    try:
        vmstatus.clean_stale(bundle.path)
        with contextlib.suppress(FileNotFoundError):
            files.last_exit.unlink()
        files.supervisor_pid.write_text(processes.record(os.getpid()))
        plan_key = launch_plan.key(bundle.path, _read_config(files))
        resuming = files.suspended_state.exists()  # its -incoming is no plan to keep
        plan = None if resuming else launch_plan.load(files, plan_key)
        if plan is not None:  # nothing it depends on changed: boot now, check below
            for path in plan["listen"].values():
                Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            replayed = launch_plan.replay(plan)
            files.engine_pid.write_text(processes.record(replayed.pid))

        from vmdesk.core import isolation  # imports the config model: after the replay

        config = bundle.load()
        from vmdesk.storage import qcow2_header

        isolation.enforce(config, bundle.path, qcow2_header.backing_chain)
        sockets = Sockets(files.sockets(str(config.uuid)))
        sockets.dir.mkdir(mode=0o700, parents=True, exist_ok=True)

        from vmdesk.engines.registry import engine_for

        engine = engine_for(config)
        session = engine.session(config, bundle.path, sockets.dir)
        fresh = session.launch_spec() if replayed is not None else None
        if replayed is not None and fresh is not None and _same_launch(fresh, plan):
            session.adopt(replayed, fresh)
        else:
            if replayed is not None:  # a dependency the plan's key missed: never expected
                print("the saved launch plan was stale; starting afresh", file=sys.stderr)
                _discard(replayed)
                replayed = None
                launch_plan.forget(files)
            ran = session.launch()
            if session.pid is not None:  # an engine that never said its pid: none to record
                files.engine_pid.write_text(processes.record(session.pid))
            if ran is not None and not resuming:
                paths = isolation.resolutions(config, bundle.path)
                launch_plan.save(files, plan_key, ran, paths)

        import asyncio  # only now: the guest is already booting

        from vmdesk.supervisor.daemon import Supervisor

        launch = "fresh" if replayed is None else "replayed"
        chosen = f"{engine.name} ({engine.reason})"  # e.g. qemu (auto: ...)
        supervisor = Supervisor(
            bundle, config, session, report, launch, chosen, capabilities=engine.capabilities()
        )
        try:
            return asyncio.run(supervisor.run())
        finally:
            supervisor.close()
    except VMDeskError as exc:
        _discard(replayed)
        vmstatus.record_exit(bundle.path, "failed", exc.message, exc.hint or "")
        report({"ok": False, **exc.to_wire()})
        return 1
    except BaseException as exc:
        _discard(replayed)
        reason = f"the supervisor failed: {type(exc).__name__}: {exc}"
        vmstatus.record_exit(bundle.path, "failed", reason)
        report({"ok": False, **EngineError(reason).to_wire()})
        print(reason, file=sys.stderr)
        raise
    finally:
        vmstatus.remove_run_files(files, sockets)
        lock.__exit__(None, None, None)
