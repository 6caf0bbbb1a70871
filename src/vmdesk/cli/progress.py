"""Showing the steps of a long operation: a spinner on a terminal, plain lines elsewhere."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.markup import escape

if TYPE_CHECKING:
    from rich.console import Console


@contextmanager
def step_reporter(console: Console, title: str) -> Iterator[Callable[[str], None]]:
    """Yield a callback that reports each new step; finished steps stay on screen."""
    with console.status(escape(title)) as status:
        previous: list[str] = []

        def report(step: str) -> None:
            if previous:
                console.print(f"  [dim]✓ {escape(previous[0])}[/]")
                previous.clear()
            previous.append(step)
            status.update(f"{escape(title)}: {escape(step)}")

        yield report
        if previous:
            console.print(f"  [dim]✓ {escape(previous[0])}[/]")
