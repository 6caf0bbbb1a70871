"""Tests that need a Mac with Virtualization.framework (see docs/macos-test-plan.md).

Not collected by the normal suite (pyproject's testpaths is ``tests``); run them with
``pytest tests_macos`` on an Apple silicon Mac with ``vmdesk[macos]`` installed.
"""

from __future__ import annotations

import sys

import pytest

if sys.platform != "darwin":  # pragma: no cover - guards against a run on the wrong host
    pytest.exit("tests_macos needs macOS (see docs/macos-test-plan.md)", returncode=2)
