"""`vmdesk app` and `vmdesk open [LINK]` while the app runs: the page is handed to it
without click, rich or the window's toolkit, so a second click on the menu entry answers
at once. Anything else (a bundle to import, odd options, no app running) takes the full
command, which also says what is wrong."""

from __future__ import annotations

from pathlib import Path

from vmdesk.core.errors import VMDeskError

ALREADY_OPEN = "VM-Desk is already open: it shows the page there"


def request(args: list[str]) -> dict[str, str] | None:
    """What to hand over, or None when the full command must decide."""
    if not args or args[0] not in ("app", "open"):
        return None
    if args[0] == "open":
        return _open_request([a for a in args[1:] if a != "--show-errors"])
    options: dict[str, str] = {}
    rest = args[1:]
    while rest:
        if len(rest) < 2 or rest[0] not in ("--page", "--console") or rest[1].startswith("-"):
            return None
        options[rest[0][2:]] = rest[1]
        rest = rest[2:]
    if "console" in options:
        return {"console": options["console"]}
    from vmdesk.desktop import launcher

    try:
        return {"page": launcher.check_page(options.get("page", "/"))}
    except VMDeskError:
        return None


def _open_request(rest: list[str]) -> dict[str, str] | None:
    if len(rest) > 1 or (rest and not rest[0].lower().startswith("vmdesk:")):
        return None  # a bundle (it may need importing) or something else
    from vmdesk.desktop import links

    try:
        found = links.resolve(rest[0] if rest else "", Path("/"))  # a link reads no library
    except VMDeskError:
        return None
    if found.console:
        return {"console": found.console}
    return {"page": found.page} if found.page else None


def run(args: list[str]) -> bool:
    """True when a running app took the request (and it was said so)."""
    wanted = request(args)
    if wanted is None:
        return False
    from vmdesk.core import paths
    from vmdesk.desktop import instance

    try:
        answer = instance.hand_over(instance.socket_path(paths.library_dir()), wanted)
    except VMDeskError:
        return False
    if answer is None or "error" in answer:
        return False
    print(ALREADY_OPEN)
    return True
