"""RELIABILITY.md from a campaign's results: ``python -m tests.reliability.report RESULTS``
(the JSON lines `make reliability` collects) prints it; each test and operation's latest
figures, then what the campaign found (findings.md, kept by hand: each cause and its fix)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

FINDINGS = Path(__file__).with_name("findings.md")


def latest(lines: list[str]) -> list[dict[str, Any]]:
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for line in lines:
        if line.strip():
            row = json.loads(line)
            by_key[(row["test"], row["operation"])] = row
    return list(by_key.values())


def table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| Test | Operation | Cases | Finished before the kill | Failures | Lost | Time |",
           "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for row in rows:
        out.append(
            f"| {row['test']} | {row['operation']} | {row['cases']} "
            f"| {'—' if row['completed'] is None else row['completed']} "
            f"| {len(row['failures'])} | {row['lost']} | {row['seconds']:.0f} s |"
        )
    return out


def render(rows: list[dict[str, Any]]) -> str:
    campaigns = sorted({row["campaign"] for row in rows})
    seeds = sorted({str(row["seed"]) for row in rows})
    when = time.strftime("%Y-%m-%d", time.gmtime(max((row["at"] for row in rows), default=0)))
    total = sum(row["cases"] for row in rows)
    lost = sum(row["lost"] for row in rows)
    failures = [f"- {row['operation']}: {f}" for row in rows for f in row["failures"]]
    lines = [
        "# Reliability",
        "",
        "Written by `make reliability` (the full campaign, `tests/reliability/`); `make test`",
        "runs the same tests with a few cases each. Every case is reproducible from its seed.",
        "",
        f"Campaign: {', '.join(campaigns)} · seed {', '.join(seeds)} · run {when} · "
        f"{total} cases · **{lost} lost** (the goal: 0)",
        "",
        *table(rows),
        "",
        "## Failures in this run",
        "",
        *(failures or ["None."]),
        "",
    ]
    if FINDINGS.exists():
        lines += [FINDINGS.read_text().rstrip(), ""]
    return "\n".join(lines)


def main() -> None:
    results = Path(sys.argv[1])
    sys.stdout.write(render(latest(results.read_text().splitlines())))


if __name__ == "__main__":
    main()
