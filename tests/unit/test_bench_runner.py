"""The benchmark runner (bench/): a smoke run of the measures that need no guest, and the
parts that turn rounds into figures, verdicts, reports and comparisons. Speed itself is
measured by `make bench`, not here."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bench import common, compare, report, runner, web_bench

ROOT = Path(__file__).resolve().parents[2]


def _tree(path: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in path.rglob("*")} if path.exists() else {}


def test_smoke_run_writes_json_report_and_chart_elsewhere(tmp_path: Path) -> None:
    committed = {**_tree(ROOT / "bench/results"), **_tree(ROOT / "BENCHMARKS.md")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--only",
            "P3,P4,P8,P10",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert {**_tree(ROOT / "bench/results"), **_tree(ROOT / "BENCHMARKS.md")} == committed

    [result] = tmp_path.glob("*-smoke.json")
    doc = json.loads(result.read_text())
    assert doc["git"]["revision"] and doc["machine"]["cpus"] and doc["qemu"]
    assert doc["accelerator"] == "tcg" and doc["options"]["smoke"] is True
    assert list(doc["measures"]) == ["P3", "P10", "P4", "P8"]  # P10 shown beside P3

    p3 = doc["measures"]["P3"]
    assert p3["status"] in ("pass", "fail") and p3["rounds"] == 1 and p3["warmup"] == 0
    listing = p3["metrics"]["vmdesk list"]
    assert listing["unit"] == "ms" and listing["n"] == 1
    assert 0 < listing["min"] <= listing["median"] <= listing["max"]
    ratio = p3["ratios"]["vmdesk list / python -c pass"]
    assert ratio["median"] == pytest.approx(
        listing["median"] / p3["metrics"]["python -c pass"]["median"], rel=0.01
    )

    p10 = doc["measures"]["P10"]
    if shutil.which("qemu-img"):
        assert p10["status"] in ("pass", "fail"), p10
        assert p10["metrics"]["vmdesk show"]["n"] == 1
        assert "vmdesk clone --linked / python -c pass" in p10["ratios"]
    else:
        assert p10["status"] == "skipped" and "is not installed" in p10["reason"]

    p4 = doc["measures"]["P4"]
    if shutil.which("qemu-io") and shutil.which("qemu-img"):
        assert p4["status"] in ("pass", "fail"), p4
        assert p4["metrics"]["full clone bytes written"]["unit"] == "MiB"
    else:
        assert p4["status"] == "skipped" and "is not installed" in p4["reason"]

    p8 = doc["measures"]["P8"]  # measured once VM-Desk serves a web API, else said why not
    assert p8["status"] in ("pass", "fail") or p8["reason"], p8

    markdown = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| | measure | goal | result | status |" in markdown
    for key in ("P3", "P10", "P4", "P8"):
        assert f"| {key} | {doc['measures'][key]['title']} |" in markdown
    assert result.name in markdown and "(ratios.png)" in markdown
    png = (tmp_path / "ratios.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) < 200_000

    # Comparing a run with itself: nothing changed.
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--compare", str(result), str(result)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "0 better, 0 worse" in done.stdout, done.stdout


def test_summaries_have_median_min_max() -> None:
    assert common.summarise([3.0, 1.0, 2.0, 10.0]) == {
        "median": 2.5,
        "p90": 3.0,
        "min": 1.0,
        "max": 10.0,
        "n": 4,
    }


def test_paired_rounds_alternate_the_order() -> None:
    ran: list[str] = []
    cases = {"a": lambda: ran.append("a") or 1.0, "b": lambda: ran.append("b") or 2.0}
    assert common.paired(cases, 0) == {"a": 1.0, "b": 2.0}
    common.paired(cases, 1)
    assert ran == ["a", "b", "b", "a"]


def _measure(one: Any, requires: str | None = None) -> tuple[common.Measure, list[bool]]:
    """A measure around ``one``, and a list that gets True when its session is cleaned up."""
    cleaned: list[bool] = []

    @contextmanager
    def session(ctx: common.Context) -> Iterator[common.Round]:
        try:
            yield one
        finally:
            cleaned.append(True)

    measure = common.Measure(
        key="PX",
        title="a test measure",
        goal="ours <= 2.5x the reference",
        session=session,
        judge=lambda fig: ("ok", "pass" if fig.ratio("ours / ref") <= 2.5 else "fail"),
        requires=lambda ctx: requires,
        rounds=3,
        pairs=[common.Pair("ours / ref", "ours", "ref", 2.5)],
        references=["ref"],
    )
    return measure, cleaned


def _options(**kwargs: Any) -> argparse.Namespace:
    return argparse.Namespace(
        **{"smoke": False, "rounds": None, "warmup": None, "web_url": None, **kwargs}
    )


def test_ratios_are_taken_round_by_round_after_the_warmup() -> None:
    # A slow warm-up round, then rounds whose ratio of medians (3.0) differs from the
    # median of the per-round ratios (2.0): the goal (2.5) is judged on the latter.
    rounds = iter([(100.0, 1.0), (2.0, 1.0), (10.0, 10.0), (3.0, 1.0)])

    def one(round_: int) -> dict[str, float]:
        ours, ref = next(rounds)
        return {"ours": ours, "ref": ref}

    measure, cleaned = _measure(one)
    entry = runner.run_measure(measure, _options())
    assert entry["warmup"] == 1 and entry["rounds"] == 3
    assert entry["metrics"]["ours"]["samples"] == [2.0, 10.0, 3.0]
    assert entry["ratios"]["ours / ref"]["median"] == 2.0
    assert entry["ratios"]["ours / ref"]["max"] == 3.0
    assert entry["status"] == "pass" and cleaned == [True]


def test_goals_are_judged_before_rounding() -> None:
    measure, _ = _measure(lambda round_: {"ours": 2.500004, "ref": 1.0})
    entry = runner.run_measure(measure, _options(warmup=0, rounds=1))
    assert entry["ratios"]["ours / ref"]["median"] == 2.5  # as written out
    assert entry["status"] == "fail"  # but 2.500004 misses "<= 2.5"


def test_a_missing_prerequisite_skips_and_a_failure_is_recorded_not_raised() -> None:
    skipped = runner.run_measure(_measure(None, requires="no frobnicator")[0], _options())
    assert skipped["status"] == "skipped" and skipped["reason"] == "no frobnicator"

    def broken(round_: int) -> dict[str, float]:
        raise RuntimeError("the guest fell over")

    measure, cleaned = _measure(broken)
    failed = runner.run_measure(measure, _options(smoke=True))
    assert failed["status"] == "error" and "the guest fell over" in failed["error"]
    assert cleaned == [True]


def _run(status: str, ours: float, ref: float, ratio: float) -> dict[str, Any]:
    return {
        "qemu": "7.2",
        "accelerator": "tcg",
        "machine": {"cpu": "x"},
        "measures": {
            "PX": {
                "title": "t",
                "status": status,
                "references": ["ref"],
                "metrics": {"ours": {"median": ours, "unit": "ms"}, "ref": {"median": ref}},
                "ratios": {"ours / ref": {"median": ratio}},
            }
        },
    }


def test_compare_says_what_got_better_or_worse_beyond_the_noise() -> None:
    lines = compare.lines(_run("fail", 200, 100, 2.0), _run("pass", 100, 300, 1.98))
    text = "\n".join(lines)
    assert "PX t: fail -> pass" in text
    assert "better ours: 200 -> 100 ms (-50%)" in text
    assert "ref" not in text.replace("ours / ref", "")  # a baseline's change is the machine's
    assert "same   ours / ref (paired): 2 -> 1.98" in text
    assert lines[-1] == "1 better, 0 worse, 1 within noise"


def test_web_load_sends_the_token_and_reports_latencies(tmp_path: Path) -> None:
    seen: set[str | None] = set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            seen.add(self.headers.get("Authorization"))
            body = b"[]" if self.path == "/api/vms" else b"no"
            self.send_response(200 if self.path == "/api/vms" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        script = tmp_path / "report.lua"
        found = web_bench.load(f"{base}/?token=sekrit", clients=4, seconds=1, script=script)
        with pytest.raises(RuntimeError, match="non-2xx"):  # a refused request is no result
            web_bench.load(f"{base}/x/?token=sekrit", clients=2, seconds=1, script=script)
    finally:
        server.shutdown()
        server.server_close()
    assert found.requests > 10 and found.per_second > 10
    assert 0 < found.median_ms <= found.p99_ms < 1000
    assert seen == {"Bearer sekrit"}


def test_a_partial_run_joins_a_full_one_and_the_report_says_where_each_comes_from(
    tmp_path: Path,
) -> None:
    def run_doc(short: str, date: str, measures: dict[str, Any]) -> dict[str, Any]:
        return {"date": date, "git": {"short": short, "dirty": False}, "took_s": 600.0,
                "options": {"smoke": False}, "measures": measures}  # fmt: skip

    def entry(result: str) -> dict[str, Any]:
        return {"title": "t", "goal": "g", "result": result, "status": "pass", "rounds": 1,
                "warmup": 0, "took_s": 1.0, "metrics": {}, "ratios": {}}  # fmt: skip

    full = run_doc("aaaa", "2026-12-01T10:00:00+00:00", {"P1": entry("old"), "P3": entry("x")})
    part = run_doc("bbbb", "2026-12-01T12:00:00+00:00", {"P23": entry("new"), "P1": entry("re")})
    doc = runner.merged(full, [part])
    assert list(doc["measures"]) == ["P1", "P3", "P23"]  # in the report's order
    assert doc["measures"]["P1"]["result"] == "re" and doc["measures"]["P3"]["result"] == "x"
    assert doc["measures"]["P23"]["run"]["git"]["short"] == "bbbb"
    assert "run" not in doc["measures"]["P3"] and "added" not in full  # the input is kept
    machine = {"arch": "x86_64", "cpu": "c", "cpus": 2, "memory_gib": 24, "os": "Debian",
               "kernel": "6", "python": "3.11", "load_average_start": [0.1],
               "load_average_end": [0.2]}  # fmt: skip
    facts = report._facts(
        {**doc, "machine": machine, "qemu": "7.2", "accelerator": "tcg", "kvm_device": "absent"}
    )
    assert (
        "P1, P23 come from a later run on the same machine (2026-12-01 12:00 UTC, "
        "revision bbbb, 10 min)" in facts
    )
    smoke = {**part, "options": {"smoke": True}}
    with pytest.raises(SystemExit, match="smoke"):
        runner.merged(full, [smoke])
