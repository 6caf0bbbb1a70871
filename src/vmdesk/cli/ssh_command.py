"""`vmdesk ssh NAME [-- CMD]`: the system's ssh, through the VM's forwarded SSH port."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


@click.command()
@click.argument("vm")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--user", "-l", help="Log in as this user (default: the one its cloud-init seed made)."
)
@click.option(
    "--identity",
    "-i",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The private key to log in with (default: ssh's own, or its agent's).",
)
@click.option("--print", "print_only", is_flag=True, help="Print the ssh command, do not run it.")
def ssh(
    vm: str, command: tuple[str, ...], user: str | None, identity: Path | None, print_only: bool
) -> None:
    """Log in to a running VM over SSH, through its forwarded port, as its cloud-init user.

    Anything after `--` runs on the VM instead of a login shell, e.g. `vmdesk ssh web -- id`.
    The VM's host keys are trusted on first use and kept in its bundle (ssh/known_hosts).
    """
    import shlex

    from vmdesk.service import library
    from vmdesk.service import ssh as vm_ssh

    argv = vm_ssh.login(library.open(), vm, user).argv(command, identity=identity)
    if print_only:
        click.echo(shlex.join(argv))
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # ssh's exit status (the command's) becomes ours
