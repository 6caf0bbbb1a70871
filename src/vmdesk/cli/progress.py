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


Transfer = Callable[[int, "int | None"], None]  # bytes so far, total (None: unknown)


@contextmanager
def transfer_progress(console: Console, title: str) -> Iterator[Transfer]:
    """A download's progress: a bar on a terminal; elsewhere a plain line every 10 % (or
    every 64 MiB when the size is unknown)."""
    if console.is_terminal:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(escape(title), total=None)
            yield lambda done, total: bar.update(task, completed=done, total=total)
        return
    from vmdesk.core.units import human_size

    shown = [-1]

    def report(done: int, total: int | None) -> None:
        step = done * 10 // total if total else done >> 26
        if step != shown[0]:
            shown[0] = step
            of = f"{step * 10}% {human_size(done)} of {human_size(total)}" if total else ""
            console.print(f"  {of or human_size(done)}", highlight=False)

    yield report
