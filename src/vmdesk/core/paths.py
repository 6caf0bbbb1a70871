"""Where VM-Desk keeps things on the host (overridable for tests and power users)."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "vmdesk"


def library_dir() -> Path:
    """The VM library: ``$VMDESK_HOME`` or the platform's user data dir."""
    env = os.environ.get("VMDESK_HOME")
    if env:
        return Path(env)
    import platformdirs  # imported only when needed: `vmdesk list` counts milliseconds

    return Path(platformdirs.user_data_dir(APP_NAME))


def cache_dir() -> Path:
    """Rebuildable things (guest images, probe results): ``$VMDESK_CACHE`` or the user cache."""
    env = os.environ.get("VMDESK_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME))
