"""The CLI's start-up: commands are imported only when invoked, and `vmdesk --help` lists
them from a table (vmdesk.cli.app.LAZY_COMMANDS) that must match the commands themselves.
Speed itself is measured by the benchmarks (P3, P10), not here."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import click
import pytest

from vmdesk.cli import app


def _registered(where: str) -> dict[str, click.Command]:
    """The commands ``where`` defines, loaded into a group of their own."""
    group = click.Group()
    module, _, attribute = where.partition(":")
    found = importlib.import_module(module)
    if attribute:
        group.add_command(getattr(found, attribute))
    else:
        found.register(group)
    return dict(group.commands)


def test_the_table_names_every_command_where_it_is_with_its_help() -> None:
    defined: dict[str, tuple[str, str]] = {}
    for where in {where for where, _ in app.LAZY_COMMANDS.values()}:
        for name, command in _registered(where).items():
            defined[name] = (where, (command.help or "").partition("\n\n")[0])
    assert defined == app.LAZY_COMMANDS
    own = {name for name, c in app.cli.commands.items() if name not in app.LAZY_COMMANDS}
    assert own == {"accel", "demo", "image"}  # defined in app.py itself, always loaded


# `vmdesk --help` as a plain click group holding every command would print it.
_EAGER_HELP = """
import click, importlib
from vmdesk.cli import app

eager = click.Group(
    name="vmdesk",
    callback=app.cli.callback,
    params=app.cli.params,
    help=app.cli.help,
    context_settings=app.cli.context_settings,
    commands={n: c for n, c in app.cli.commands.items() if n not in app.LAZY_COMMANDS},
)
for where in {where for where, _ in app.LAZY_COMMANDS.values()}:
    module, _, attribute = where.partition(":")
    found = importlib.import_module(module)
    if attribute:
        eager.add_command(getattr(found, attribute))
    else:
        found.register(eager)
eager.main(["--help"], prog_name="vmdesk")
"""


@pytest.mark.parametrize("columns", ["60", "200"])  # help lines cut short, and less so
def test_help_from_the_table_is_what_the_commands_would_print(columns: str) -> None:
    # In child processes: click's test runner forces its own width, ignoring COLUMNS.
    env = {**os.environ, "COLUMNS": columns}
    lazy, eager = (
        subprocess.run(
            [sys.executable, *argv], capture_output=True, text=True, env=env, check=True
        ).stdout
        for argv in (["-m", "vmdesk.cli.main", "--help"], ["-c", _EAGER_HELP])
    )
    assert "  show " in lazy and lazy == eager


_IMPORTED = """
import json, sys
sys.argv = ["vmdesk", *json.loads(sys.argv[1])]
from vmdesk.cli import main
try:
    main.main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def _imported(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTED, json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_help_imports_no_command_module_nor_rich_nor_pydantic() -> None:
    imported = _imported("--help")
    assert "vmdesk.cli.app" in imported
    heavy = {"rich", "pydantic", "vmdesk.cli.vm_commands", "vmdesk.cli.run_commands"}
    heavy |= {"vmdesk.cli.storage_commands", "vmdesk.cli.doctor_command"}
    assert not heavy & imported


def test_a_command_imports_its_own_module_only() -> None:
    imported = _imported("schema", "--help")
    assert "vmdesk.cli.vm_commands" in imported
    assert not {"vmdesk.cli.run_commands", "vmdesk.cli.doctor_command"} & imported


def test_an_unknown_command_still_gets_a_suggestion() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vmdesk.cli.main", "shwo"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "No such command 'shwo'." in done.stderr and "show" in done.stderr
