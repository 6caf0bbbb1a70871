"""A VM's screen: its resolution, and a native window for engines that show one."""

from __future__ import annotations

from typing import Any

from vmdesk.core import specs
from vmdesk.core.errors import Unsupported
from vmdesk.core.library import Library
from vmdesk.core.states import AT_REST
from vmdesk.display import screen
from vmdesk.service.library import find


def set_resolution(library: Library, ref: str, resolution: str) -> tuple[int, int]:
    """Change a stopped VM's display size (from its next start)."""
    bundle = find(library, ref)
    config = bundle.load()
    width, height = specs.resolution(resolution)
    config.display.width, config.display.height = width, height
    library.update(bundle, config)
    return width, height


def open_window(library: Library, ref: str) -> dict[str, Any]:
    """Ask the running VM's supervisor to show its screen in a native window (vz: AppKit
    needs the process that owns the VM). ``{"window": "opened" | "shown"}``."""
    from vmdesk.engines import registry
    from vmdesk.supervisor import client
    from vmdesk.supervisor import status as vmstatus

    bundle = find(library, ref)
    name = bundle.dir_name.removesuffix(".vmdesk")
    state = vmstatus.derive(bundle.path)["status"]
    if state in AT_REST:
        if registry.describe(bundle.load())["display"]["kind"] != "window":
            message, _ = screen.no_window(name, None)
            raise Unsupported(
                message,
                hint=f"start it (`vmdesk start {name}`), then open its console in the web app "
                f"(`vmdesk ui`, then {name} → Console) or point a VNC viewer at its socket "
                f"(`vmdesk show {name}` names it)",
            )
        start = "resume it" if state == "suspended" else "start it"
        raise client.NotRunning(
            f"VM {name!r} is {state}: its window shows a running VM",
            hint=f"{start} first: `vmdesk start {name}`, then `vmdesk display {name} --window`",
        )
    return client.window(bundle)  # the running supervisor answers for its engine
