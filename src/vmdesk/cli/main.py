"""The ``vmdesk`` command: the only place errors become messages and exit codes."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: the fast paths below stay off it
if TYPE_CHECKING:
    from vmdesk.core.errors import ConfigError


def _fast_list(args: list[str]) -> bool:
    """`vmdesk list [--json]` without importing click, rich or pydantic (it must be quick)."""
    if not args or args[0] != "list" or any(a not in ("--json",) for a in args[1:]):
        return False
    from vmdesk.cli import fast_list

    fast_list.run("--json" in args)
    return True


def _fast_start(args: list[str]) -> bool:
    """`vmdesk start NAME [--wait-ready] [--timeout N]` without click or rich."""
    from vmdesk.cli import fast_start

    options = fast_start.parse(args)
    if options is None:
        return False
    from vmdesk.core.errors import VMDeskError

    try:
        fast_start.run(
            str(options["vm"]),
            wait_ready=bool(options["wait_ready"]),
            ready_pattern=fast_start.DEFAULT_READY,
            timeout=float(options["timeout"]),  # type: ignore[arg-type]
            say=print,
        )
    except VMDeskError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    return True


def _fast_app(args: list[str]) -> bool:
    """`vmdesk app` / `vmdesk open LINK` handed to the running app (see fast_app)."""
    if not args or args[0] not in ("app", "open"):
        return False
    from vmdesk.cli import fast_app

    return fast_app.run(args)


def _print_config_error(exc: ConfigError) -> None:
    from rich.markup import escape

    from vmdesk.cli.output import err_console

    if len(exc.problems) == 1:
        err_console.print(f"[bold red]error:[/] {escape(exc.message)}")
        err_console.print(f"[yellow]hint:[/] {escape(exc.hint or '')}")
        return
    err_console.print(f"[bold red]error:[/] {len(exc.problems)} problems in the VM description")
    for problem in exc.problems:
        err_console.print(f"  [red]•[/] {escape(str(problem))}")
        err_console.print(f"    [yellow]hint:[/] {escape(problem.hint)}")


def main() -> None:
    args = sys.argv[1:]
    if _fast_list(args) or _fast_start(args) or _fast_app(args):
        return
    import click

    from vmdesk.cli.app import cli
    from vmdesk.cli.output import err_console
    from vmdesk.core.errors import ConfigError, VMDeskError

    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="vmdesk", standalone_mode=False)
    except ConfigError as exc:
        if debug:
            raise
        _print_config_error(exc)
        sys.exit(exc.exit_code)
    except VMDeskError as exc:
        if debug:
            raise
        from rich.markup import escape  # here: a command that succeeds may never need rich

        err_console.print(f"[bold red]error:[/] {escape(exc.message)}")
        if exc.hint:
            err_console.print(f"[yellow]hint:[/] {escape(exc.hint)}")
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
