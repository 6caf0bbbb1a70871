"""A VM's screen: its resolution, and a native window for engines that show one."""

from __future__ import annotations

from typing import Any

from vmdesk.core import specs
from vmdesk.core.errors import Unsupported
from vmdesk.core.library import Library
from vmdesk.core.states import AT_REST
from vmdesk.display import screen
from vmdesk.service.library import find


def set_resolution(library: Library, ref: str, resolution: str) -> tuple[int, int, str]:
    """Change a VM's display size: a running guest's now, through its SPICE agent (what
    the third value says: "live", or "asked" while the agent is not there yet); a stopped
    VM's from its next start ("next start")."""
    from vmdesk.supervisor import status as vmstatus

    bundle = find(library, ref)
    width, height = specs.resolution(resolution)
    if vmstatus.derive(bundle.path)["status"] not in AT_REST:
        from vmdesk.service import guest

        heard = guest.resize(library, ref, width, height)
        return width, height, "live" if heard else "asked"
    config = bundle.load()
    config.display.width, config.display.height = width, height
    library.update(bundle, config)
    return width, height, "next start"


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
