"""`vmdesk list` with the standard library only: it must start fast with many VMs."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def run(as_json: bool) -> None:
    from vmdesk.core import listing, paths
    from vmdesk.supervisor import status as vmstatus

    rows = listing.summaries(paths.library_dir())
    for row in rows:  # status is derived live: lock, supervisor, last exit
        if row.get("status") != "broken":
            row.update(vmstatus.derive(Path(row["path"])))
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        sys.stdout.write(listing.table(rows))
