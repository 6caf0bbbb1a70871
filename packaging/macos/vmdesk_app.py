"""VM-Desk.app's entry point (py2app runs this file as __main__): `vmdesk app` when the app
is opened from the Finder, the Dock or `open -a VM-Desk`; any other vmdesk command when the
bundle's executable is run with arguments from a terminal, so the bundle's own Python can be
checked (`VM-Desk.app/Contents/MacOS/VM-Desk doctor` reports its entitlement); and
`-m MODULE ...` as a Python would, for when sys.executable is this executable: each VM's
supervisor is started as `sys.executable -m vmdesk.supervisor`."""

from __future__ import annotations

import runpy
import sys


def command_line(args: list[str]) -> list[str]:
    """vmdesk's arguments for the app's: "-psn_..." is a process serial number that older
    macOS releases pass to an app the Finder starts, not an argument."""
    given = [arg for arg in args if not arg.startswith("-psn_")]
    return given or ["app"]


def run(args: list[str]) -> None:
    if len(args) >= 2 and args[0] == "-m":
        sys.argv = ["-m", *args[2:]]  # runpy puts the module's path first, as python -m does
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        return
    from vmdesk.cli.main import main

    sys.argv = [sys.argv[0], *command_line(args)]
    main()


if __name__ == "__main__":
    run(sys.argv[1:])
