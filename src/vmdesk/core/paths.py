"""Where VM-Desk keeps things on the host (overridable for tests and power users)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "vmdesk"


def library_dir() -> Path:
    """The VM library: ``$VMDESK_HOME`` or the platform's user data dir."""
    env = os.environ.get("VMDESK_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir(APP_NAME))


def cache_dir() -> Path:
    """Rebuildable things (guest images, probe results): ``$VMDESK_CACHE`` or the user cache."""
    env = os.environ.get("VMDESK_CACHE")
    return Path(env) if env else Path(platformdirs.user_cache_dir(APP_NAME))
