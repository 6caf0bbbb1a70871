"""Run the benchmarks (P1..P24): prerequisites, warm-up, rounds, summaries, the JSON result
and the report (BENCHMARKS.md with a chart). Needs only this repository's Python; each
measure imports VM-Desk itself and is skipped, with the reason, when it cannot run here.

    .venv/bin/python -m bench                    every measure, default rounds
    .venv/bin/python -m bench --only P3,P4       some of them (JSON only, unless --out)
    .venv/bin/python -m bench --smoke --out DIR  one round, small sizes: the plumbing
    .venv/bin/python -m bench --compare OLD.json [NEW.json]   what got better or worse
    .venv/bin/python -m bench --report-from RESULT.json       rewrite the report only
    .venv/bin/python -m bench --report-from FULL.json --add PART.json   a full run with some
                                                 measures from a later partial run
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import compare, report
from bench.common import Context, Figures, Measure, rounded, summarise

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
REPORT = ROOT / "BENCHMARKS.md"
CHART = RESULTS / "ratios.png"
# In the order the report shows them: P10 (the other commands' start-up) sits beside P3.
MODULES = (
    "boot_bench",
    "desktop_boot_bench",
    "cpu_bench",
    "list_bench",
    "cli_bench",
    "storage_bench",
    "create_bench",
    "snapshot_bench",
    "share_bench",
    "memory_bench",
    "web_bench",
    "pull_bench",
    "clipboard_bench",
    "agent_bench",
    "disk_io_bench",
    "net_bench",
    "balloon_bench",
    "remote_start_bench",
    "remote_list_bench",
    "app_bench",
)


def measures() -> list[Measure]:
    return [importlib.import_module(f"bench.{name}").MEASURE for name in MODULES]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", metavar="P1,P3", help="run only these measures")
    parser.add_argument("--rounds", type=int, help="rounds per measure (default: each its own)")
    parser.add_argument("--warmup", type=int, help="warm-up rounds, not counted (default 1)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="1 round, no warm-up, small sizes: checks the runner, not speed",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write the JSON, BENCHMARKS.md and chart here instead",
    )
    parser.add_argument("--web-url", metavar="URL", help="a running VM-Desk web API, for P8")
    parser.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="OLD.json [NEW.json]: print what got better or worse, run nothing "
        "(NEW defaults to the newest result in bench/results)",
    )
    parser.add_argument(
        "--report-from",
        type=Path,
        metavar="JSON",
        help="rewrite BENCHMARKS.md and its chart from this result file, run nothing",
    )
    parser.add_argument(
        "--add",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="with --report-from: measures from these (partial) runs replace or join the "
        "full run's; each measure says which run it comes from (a merged JSON is written)",
    )
    parser.add_argument("--list", action="store_true", help="list the measures and exit")
    args = parser.parse_args(argv)
    if args.compare and len(args.compare) > 2:
        parser.error("--compare takes OLD.json and optionally NEW.json")
    if args.add and not args.report_from:
        parser.error("--add needs --report-from FULL.json")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    every = measures()
    if args.list:
        for m in every:
            print(f"{m.key}  {m.title}  (goal: {m.goal}; {m.rounds} rounds)")
        return 0
    if args.compare:
        return _compare(args.compare)
    if args.report_from:
        doc, path = json.loads(args.report_from.read_text()), args.report_from
        if args.add:
            doc = merged(doc, [json.loads(p.read_text()) for p in args.add])
            path = (args.out or RESULTS) / f"{args.report_from.stem}-merged.json"
            path.write_text(json.dumps(doc, indent=1) + "\n")
            print(f"results: {_shown(path)}")
        _report(doc, path, args.out)
        return 0
    wanted = {k.strip().upper() for k in args.only.split(",")} if args.only else None
    unknown = (wanted or set()) - {m.key for m in every}
    if unknown:
        print(f"no such measure: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    chosen = [m for m in every if wanted is None or m.key in wanted]

    started = time.monotonic()
    doc: dict[str, Any] = {
        "schema": 1,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_revision(),
        "machine": machine(),
        "qemu": qemu_version(),
        "accelerator": "tcg",  # every guest is started with VMDESK_ACCEL=tcg (bench.common)
        "kvm_device": "present" if Path("/dev/kvm").exists() else "absent",
        "options": {
            "smoke": args.smoke,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "only": sorted(wanted) if wanted else None,
        },
        "measures": {},
    }
    for measure in chosen:
        doc["measures"][measure.key] = run_measure(measure, args)
    doc["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["took_s"] = round(time.monotonic() - started, 1)

    out = args.out or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(doc["date"]).strftime("%Y-%m-%dT%H%M%SZ")
    suffix = "-smoke" if args.smoke else ""
    path = out / f"{stamp}-{doc['git']['short']}{suffix}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"\nresults: {_shown(path)}")
    if args.out is not None or (wanted is None and not args.smoke):
        _report(doc, path, args.out)
    else:
        print("report not rewritten: it shows full runs only (give --out DIR for one of this)")
    print(report.summary_table(doc))
    print(f"took {doc['took_s'] / 60:.1f} min")
    return 1 if any(r["status"] == "error" for r in doc["measures"].values()) else 0


def _report(doc: dict[str, Any], json_path: Path, out: Path | None) -> None:
    md, png = (out / "BENCHMARKS.md", out / "ratios.png") if out else (REPORT, CHART)
    report.write(doc, json_path, md, png)
    print(f"report: {_shown(md)} (chart {_shown(png)})")


def run_measure(measure: Measure, args: argparse.Namespace) -> dict[str, Any]:
    entry: dict[str, Any] = {"title": measure.title, "goal": measure.goal}
    tmp = Path(tempfile.mkdtemp(prefix=f"vmdesk-bench-{measure.key}-"))
    ctx = Context(tmp=tmp, smoke=args.smoke, web_url=args.web_url)
    try:
        reason = measure.requires(ctx)
        if reason is not None:
            print(f"\n{measure.key} skipped: {reason}", flush=True)
            return {**entry, "status": "skipped", "reason": reason}
        rounds = 1 if args.smoke else args.rounds or measure.rounds
        warmup = 0 if args.smoke else measure.warmup if args.warmup is None else args.warmup
        print(f"\n{measure.key} {measure.title}: {warmup} warm-up + {rounds} rounds", flush=True)
        started = time.monotonic()
        per_round: list[dict[str, float]] = []
        with measure.session(ctx) as one:
            for i in range(warmup):
                one(i)  # caches, launch plans, lazy imports: not what we measure
            for i in range(rounds):
                per_round.append(one(i))
                print(f"   round {i + 1}/{rounds} ({time.monotonic() - started:.0f} s)", flush=True)
        metrics, ratios = summarise_rounds(measure, per_round)
        result, status = measure.judge(Figures(metrics, ratios))  # before any rounding
        entry.update(
            result=result,
            status=status,
            rounds=rounds,
            warmup=warmup,
            took_s=round(time.monotonic() - started, 1),
        )
        entry.update(rounded({"metrics": metrics, "ratios": ratios}, 5))
        entry["references"] = list(measure.references)
        if ctx.facts:
            entry["facts"] = ctx.facts
        print(report.measure_text(entry), flush=True)
        return entry
    except Exception as error:  # one broken measure must not cost the others' results
        traceback.print_exc()
        print(f"{measure.key} failed: {error}", flush=True)
        return {**entry, "status": "error", "error": f"{type(error).__name__}: {error}"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def summarise_rounds(
    measure: Measure, per_round: list[dict[str, float]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each metric's summary, and each pair's ratio taken within each round, with the
    samples they came from."""
    samples: dict[str, list[float]] = {}
    for figures in per_round:
        for name, value in figures.items():
            samples.setdefault(name, []).append(value)
    metrics = {
        name: {"unit": measure.unit(name), **summarise(values), "samples": values}
        for name, values in samples.items()
    }
    ratios: dict[str, Any] = {}
    for pair in measure.pairs:
        values = [
            r[pair.ours] / r[pair.reference]
            for r in per_round
            if pair.ours in r and r.get(pair.reference, 0) > 0
        ]
        if values:
            ratios[pair.label] = {
                "ours": pair.ours,
                "reference": pair.reference,
                "goal_max": pair.goal_max,
                **summarise(values),
                "samples": values,
            }
    return metrics, ratios


def merged(full: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    """``full`` with the measures of each later partial run in ``parts`` in place of (or
    beside) its own, each of those marked with the run it comes from."""
    doc = json.loads(json.dumps(full))
    for part in parts:
        if part["options"].get("smoke"):
            raise SystemExit("a smoke run's figures mean nothing: add a real run")
        source = {"date": part["date"], "git": part["git"], "took_s": part["took_s"]}
        for key, entry in part["measures"].items():
            doc["measures"][key] = {**entry, "run": source}
        doc.setdefault("added", []).append(source)
    order = {m.key: i for i, m in enumerate(measures())}
    doc["measures"] = dict(sorted(doc["measures"].items(), key=lambda kv: order.get(kv[0], 99)))
    return doc


def _compare(paths: list[Path]) -> int:
    old = json.loads(paths[0].read_text())
    if len(paths) == 2:
        new_path = paths[1]
    else:
        runs = [p for p in RESULTS.glob("*.json") if p.resolve() != paths[0].resolve()]
        if not runs:
            print(f"no other result in {_shown(RESULTS)} to compare with", file=sys.stderr)
            return 2
        new_path = max(runs, key=lambda p: json.loads(p.read_text()).get("date", ""))
    print(f"comparing {_shown(paths[0])} (old) with {_shown(new_path)} (new)")
    print("\n".join(compare.lines(old, json.loads(new_path.read_text()))))
    return 0


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _run(*argv: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def git_revision() -> dict[str, Any]:
    full = _run("git", "rev-parse", "HEAD")
    return {
        "revision": full or "unknown",
        "short": full[:7] or "unknown",
        # Someone else's uncommitted edits count too: the numbers are of the tree as it was.
        "dirty": bool(_run("git", "status", "--porcelain", "--untracked-files=no")),
    }


def qemu_version() -> str:
    for program in ("qemu-system-x86_64", "qemu-system-aarch64", "qemu-img"):
        match = re.search(r"version (\S+(?: \([^)]*\))?)", _run(program, "--version"))
        if match:
            return match.group(1)
    return "not installed"


def machine() -> dict[str, Any]:
    def first(path: str, key: str) -> str:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            return ""
        return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(key)), "")

    def os_name() -> str:
        try:
            text = Path("/etc/os-release").read_text()
        except OSError:
            return platform.system()
        match = re.search(r'^PRETTY_NAME="?([^"\n]*)', text, re.MULTILINE)
        return match.group(1) if match else platform.system()

    memory_kib = first("/proc/meminfo", "MemTotal").split()
    return {
        "arch": platform.machine(),
        "cpu": first("/proc/cpuinfo", "model name") or platform.processor(),
        "cpus": os.cpu_count(),
        "memory_gib": round(int(memory_kib[0]) / (1 << 20), 1) if memory_kib else None,
        "os": os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
