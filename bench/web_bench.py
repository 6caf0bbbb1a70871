"""P8: REST `GET /api/vms` with 20 VMs in the library and 50 concurrent clients.
Goal: p99 <= 25 ms.

The load comes from wrk (written in C: one thread, 50 keep-alive connections, each
sending its next request when the last is answered). A load generator written in Python
measured mostly itself: 50 threads contending for one interpreter on the server's cores.
Each round runs wrk for a few seconds against `vmdesk ui --port 0 --no-browser` over a
library of 20 VMs and, in alternating order, against a reference: bare uvicorn answering
with a body of the same size and no work at all (bench/web_reference.py), the floor this
machine sets. The ratio of the two p99s, taken round by round, is what VM-Desk adds.
With `--web-url` only the given server is measured.

    .venv/bin/python -m bench.web_bench [--web-url http://HOST:PORT/?token=T] [--rounds N]
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from bench.common import (
    Context,
    Figures,
    Measure,
    Pair,
    Round,
    Status,
    missing,
    vmdesk_cli,
    vmdesk_env,
)

GOAL_MS = 25.0
CLIENTS, VMS, SECONDS = 50, 20, 5  # seconds: wrk takes whole ones
P99, MEDIAN, RATE = "GET /api/vms p99", "GET /api/vms median", "GET /api/vms per second"
REF_P99 = "bare uvicorn p99"

# wrk's report as one JSON line (latencies in microseconds); errors are counted, not hidden.
REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "p50_us": %d, "p99_us": %d, "errors": %d, "non_2xx": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass(frozen=True)
class Load:
    requests: int
    per_second: float
    median_ms: float
    p99_ms: float


def _list_request(url: str) -> tuple[str, dict[str, str]]:
    """`{url}/api/vms`, and the headers that send a ``token`` in the URL's query as a
    bearer token."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"not an http://HOST:PORT URL: {url}")
    target = f"http://{parts.netloc}{parts.path.rstrip('/')}/api/vms"
    token = parse_qs(parts.query).get("token", [""])[0]
    return target, {"Authorization": f"Bearer {token}"} if token else {}


def load(url: str, clients: int, seconds: int, script: Path) -> Load:
    """``clients`` connections sending `GET {url}/api/vms` back to back for ``seconds``
    (a ``token`` in the URL's query is sent as a bearer token). ``script``: where the
    report script is written."""
    target, headers = _list_request(url)
    script.write_text(REPORT_LUA)
    argv = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script)]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    done = subprocess.run([*argv, target], capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {(done.stderr or done.stdout)[-500:]}")
    report = json.loads(lines[-1])
    if report["errors"] or report["non_2xx"] or not report["requests"]:
        raise RuntimeError(f"GET {target}: {report} (errors or non-2xx answers)")
    return Load(
        requests=report["requests"],
        per_second=report["requests"] / report["seconds"],
        median_ms=report["p50_us"] / 1000,
        p99_ms=report["p99_us"] / 1000,
    )


def _requires(ctx: Context) -> str | None:
    reason = missing(vmdesk=ctx.web_url is None, programs=["wrk"])
    if reason is not None:
        return f"{reason} (make setup installs it)"
    return None


@contextmanager
def _process(argv: list[str], env: dict[str, str] | None = None) -> Iterator[str]:
    """Run a server that prints its URL; yields the URL, stops the server afterwards."""
    server = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert server.stdout is not None
        printed = ""
        deadline = time.monotonic() + 60
        while (found := re.search(r"http://\S+", printed)) is None:
            line = server.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} printed no URL: {printed.strip()!r}")
            printed += line
        yield found.group(0)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _library(ctx: Context) -> Path:
    from vmdesk.core import config
    from vmdesk.core.bundle import Bundle

    home = ctx.tmp / "library"
    home.mkdir()
    for i in range(VMS):
        Bundle.create(home / f"vm{i:02}.vmdesk", config.from_dict({"name": f"vm{i:02}"}))
    ctx.facts["VMs in the library"] = VMS
    ctx.facts["concurrent clients"] = CLIENTS
    return home


def _list_size(url: str) -> int:
    """Bytes of the VM list the server answers (the reference answers as many)."""
    import urllib.request

    target, headers = _list_request(url)
    request = urllib.request.Request(target, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as answer:
        return len(answer.read())


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    seconds = 1 if ctx.smoke else SECONDS
    clients = 5 if ctx.smoke else CLIENTS
    script = ctx.tmp / "report.lua"

    def figures(prefix: str, found: Load) -> dict[str, float]:
        if prefix:
            return {REF_P99: found.p99_ms}
        return {P99: found.p99_ms, MEDIAN: found.median_ms, RATE: found.per_second}

    with ExitStack() as stack:
        if ctx.web_url is not None:
            urls = {"": ctx.web_url}
        else:
            # A wide console, so that the printed URL is not wrapped.
            env = {**vmdesk_env(_library(ctx)), "COLUMNS": "1000", "NO_COLOR": "1"}
            ours = stack.enter_context(
                _process([vmdesk_cli(), "ui", "--port", "0", "--no-browser"], env)
            )
            size = _list_size(ours)
            ctx.facts["bytes per answer"] = size
            reference = [sys.executable, "-m", "bench.web_reference", str(size)]
            urls = {"": ours, "reference": stack.enter_context(_process(reference))}

        def one(round_: int) -> dict[str, float]:
            order = list(urls) if round_ % 2 == 0 else list(urls)[::-1]
            found: dict[str, float] = {}
            for prefix in order:
                found |= figures(prefix, load(urls[prefix], clients, seconds, script))
            return found

        yield one


def judge(fig: Figures) -> tuple[str, Status]:
    p99 = fig.median(P99)
    status: Status = "pass" if p99 <= GOAL_MS else "fail"
    line = f"p99 {p99:.1f} ms (median request {fig.median(MEDIAN):.1f} ms"
    if REF_P99 in fig.metrics:
        line += f"; bare uvicorn p99 {fig.median(REF_P99):.1f} ms"
    return line + ")", status


MEASURE = Measure(
    key="P8",
    title=f"REST `GET /api/vms`, {VMS} VMs, {CLIENTS} concurrent clients",
    goal=f"p99 <= {GOAL_MS:.0f} ms",
    session=session,
    judge=judge,
    requires=_requires,
    rounds=7,
    units={RATE: "requests/s"},
    pairs=[Pair("p99: ours / bare uvicorn", P99, REF_P99)],
    references=[REF_P99],
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
