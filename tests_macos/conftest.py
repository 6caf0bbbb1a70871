"""Tests that need a Mac with Virtualization.framework (see docs/macos-test-plan.md).

Run them with ``pytest tests_macos`` on an Apple silicon Mac with ``vmdesk[macos]``
installed. Anywhere else every test here is marked ``macos`` and skipped with the reason;
the normal suite (pyproject's testpaths is ``tests``) never collects them, and CI runs
them apart, only to list them as skipped, never counting them as passed.
"""

from __future__ import annotations

import sys

import pytest

MAC_ONLY = (
    "needs macOS 13+ on Apple silicon with vmdesk[macos]; "
    "a person runs it there (docs/macos-test-plan.md)"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.macos)
        if sys.platform != "darwin":
            item.add_marker(pytest.mark.skip(reason=MAC_ONLY))
