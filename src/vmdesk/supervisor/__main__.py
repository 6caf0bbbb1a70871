"""Entry point: ``python -m vmdesk.supervisor BUNDLE_DIR [--ready-fd N]``."""

from __future__ import annotations

import sys

from vmdesk.supervisor.launcher import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
