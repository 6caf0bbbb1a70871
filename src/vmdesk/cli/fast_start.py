"""`vmdesk start` with the standard library only: every millisecond before the supervisor
spawns is added to the guest's boot time, so this path imports neither click nor rich."""

from __future__ import annotations

import time
from collections.abc import Callable

TYPE_CHECKING = False  # not typing's: `typing` stays off the VM start path
if TYPE_CHECKING:
    from vmdesk.core.bundle import Bundle

DEFAULT_READY = r"^VMDESK-READY [^\r\n]*(?=\r?\n)"


def find_bundle(vm: str) -> Bundle:
    """The VM's bundle by name or UUID, found without importing the config model."""
    from vmdesk.core import lookup, paths
    from vmdesk.core.bundle import Bundle

    return Bundle(lookup.find(paths.library_dir(), vm))


def run(
    vm: str, *, wait_ready: bool, ready_pattern: str, timeout: float, say: Callable[[str], None]
) -> None:
    if ":" in vm:  # a VM on another host: no supervisor of ours, libvirt's daemon runs it
        _run_on_host(vm, wait_ready=wait_ready, ready_pattern=ready_pattern, timeout=timeout,
                     say=say)  # fmt: skip
        return
    from vmdesk.supervisor import client

    bundle = find_bundle(vm)
    started = time.monotonic()
    report = client.start(bundle, fork=True)
    # The supervisor says which engine it chose and why: no config model to import here.
    engine = [f"engine: {report['engine']}"] if report.get("engine") else []
    if report.get("already_running"):
        say(f"VM {vm} is already running")
    elif report.get("resumed"):
        took = time.monotonic() - started
        say(f"✓ resumed {vm} from its saved state in {took:.1f} s")
        for line in engine:
            say(line)
        return  # the guest was ready before it was suspended
    else:
        took = time.monotonic() - started
        say(f"✓ started {vm} in {took:.1f} s (accelerator {report.get('accel')})")
        for line in engine:
            say(line)
    if wait_ready:
        line = client.wait_ready(bundle, ready_pattern, timeout)
        say(f"✓ ready after {time.monotonic() - started:.1f} s: {line}")


def parse(args: list[str]) -> dict[str, object] | None:
    """``start NAME [--wait-ready] [--timeout N]``; None for anything else (click handles it)."""
    if len(args) < 2 or args[0] != "start" or args[1].startswith("-"):
        return None
    options: dict[str, object] = {"vm": args[1], "wait_ready": False, "timeout": 120.0}
    rest = args[2:]
    while rest:
        flag = rest.pop(0)
        if flag == "--wait-ready":
            options["wait_ready"] = True
        elif flag == "--timeout" and rest:
            try:
                options["timeout"] = float(rest.pop(0))
            except ValueError:
                return None
        else:
            return None
    return options


def _run_on_host(
    vm: str, *, wait_ready: bool, ready_pattern: str, timeout: float, say: Callable[[str], None]
) -> None:
    from vmdesk.service import library, lifecycle, remote_run

    lib, (host, name) = library.open(), lifecycle.on_host(vm) or ("", vm)
    started = time.monotonic()
    line = None
    if wait_ready:
        report, line = remote_run.start_and_wait(lib, host, name, ready_pattern, timeout)
    else:
        report = lifecycle.start(lib, vm)
    if report.get("already_running"):
        say(f"VM {vm} is already running")
        return
    say(f"✓ started {vm} ({report['engine']})")
    if line is not None:
        say(f"✓ ready after {time.monotonic() - started:.1f} s: {line}")
