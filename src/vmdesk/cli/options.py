"""Options and output shared by several commands."""

from __future__ import annotations

import json
from typing import Any

import click

JSON_OUTPUT = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))
