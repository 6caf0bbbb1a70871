"""RELIABILITY.md's generator: the latest figures per test and operation, and failures."""

from __future__ import annotations

import json

from tests.reliability import report


def _row(operation: str, **extra: object) -> str:
    row = {"test": "crash: kill -9 of the CLI", "operation": operation, "cases": 50,
           "completed": 7, "failures": [], "lost": 0, "seconds": 61.2, "seed": 1,
           "campaign": "full", "at": 1796140800.0, **extra}  # fmt: skip
    return json.dumps(row)


def test_the_latest_run_of_each_operation_is_reported_with_its_failures() -> None:
    lines = [_row("clone", lost=3), _row("edit"), _row("clone", failures=["case 4: between"])]
    text = report.render(report.latest(lines))
    assert "| crash: kill -9 of the CLI | clone | 50 | 7 | 1 | 0 | 61 s |" in text
    assert "| crash: kill -9 of the CLI | edit | 50 | 7 | 0 | 0 | 61 s |" in text
    assert "100 cases · **0 lost**" in text and "- clone: case 4: between" in text
    assert "seed 1" in text and "run 2026-12-01" in text


def test_tests_without_kills_show_no_kill_figure() -> None:
    text = report.render(report.latest([_row("JSON", completed=None, test="hostile input")]))
    assert "| hostile input | JSON | 50 | — | 0 | 0 | 61 s |" in text
    assert "## Failures in this run\n\nNone." in text
