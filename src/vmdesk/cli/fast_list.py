"""`vmdesk list` with the standard library only: it must start fast with many VMs."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def run(as_json: bool) -> None:
    from vmdesk.core import hosts, listing, paths
    from vmdesk.supervisor import status as vmstatus

    rows = listing.summaries(paths.library_dir())
    for row in rows:  # status is derived live: lock, supervisor, last exit
        if row.get("status") != "broken":
            row.update(vmstatus.derive(Path(row["path"])))
    problems: list[str] = []
    if (paths.library_dir() / hosts.FILE).is_file():  # other hosts: their VMs too
        from vmdesk.service import remote_list

        found, problems = remote_list.vm_rows(paths.library_dir())
        rows += found
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        sys.stdout.write(listing.table(rows))
    for problem in problems:
        sys.stderr.write(f"warning: {problem}\n")
