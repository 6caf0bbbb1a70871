"""P8: REST `GET /api/vms` latency with 50 concurrent clients. Goal: p99 <= 25 ms.

The runner serves a library of 10 VMs with `vmdesk ui --port 0 --no-browser` (or measures
the server given with `--web-url`). Each round, 50 client threads (one keep-alive
connection each) start together and send 20 requests each; the round's figure is the
99th percentile of those 1000 latencies. The clients share this machine (and Python's
GIL) with the server, so the figure is an upper bound on what a remote client would see.
Skipped, with the reason, while VM-Desk has no web API (no `vmdesk.web.app`).

    .venv/bin/python -m bench.web_bench [--web-url http://HOST:PORT/?token=T] [--rounds N]
"""

from __future__ import annotations

import http.client
import importlib.util
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

from bench.common import (
    Context,
    Figures,
    Measure,
    Round,
    Status,
    missing,
    ms_since,
    vmdesk_cli,
    vmdesk_env,
)

GOAL_MS = 25.0
CLIENTS, REQUESTS = 50, 20
VMS = 10
P99, MEDIAN = "GET /api/vms p99", "GET /api/vms median"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def load(url: str, clients: int, requests: int) -> list[float]:
    """Milliseconds of every `GET {url}/api/vms`, from ``clients`` threads at once; a
    ``token`` in the URL's query is sent as a bearer token."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"not an http://HOST:PORT URL: {url}")
    host, port, path = parts.hostname, parts.port or 80, parts.path.rstrip("/") + "/api/vms"
    token = parse_qs(parts.query).get("token", [""])[0]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    latencies: list[float] = []
    errors: list[Exception] = []
    lock = threading.Lock()
    ready = threading.Barrier(clients)

    def client() -> None:
        mine: list[float] = []
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            conn.connect()
            ready.wait()
            for _ in range(requests):
                start = time.perf_counter()
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                mine.append(ms_since(start))
                if response.status != 200:
                    raise RuntimeError(f"GET {path}: HTTP {response.status}")
        except Exception as error:  # reported from the caller's thread
            ready.abort()
            with lock:
                errors.append(error)
        finally:
            conn.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        # One failing client breaks the others' barrier: report the failure that started it.
        cause = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)] or errors
        raise RuntimeError(f"{len(errors)} of {clients} clients failed: {cause[0]!r}")
    return latencies


def _requires(ctx: Context) -> str | None:
    if ctx.web_url is not None:
        return None
    reason = missing()
    if reason is not None:
        return reason
    if importlib.util.find_spec("vmdesk.web.app") is None:
        return "the web API does not exist yet (vmdesk.web has no app)"
    if subprocess.run([vmdesk_cli(), "ui", "--help"], capture_output=True).returncode != 0:
        return "vmdesk.web has an app, but there is no `vmdesk ui` to serve it"
    return None


@contextmanager
def _served(ctx: Context) -> Iterator[str]:
    """`vmdesk ui` on a free port over a library of VMS VMs; yields its URL (with token)."""
    from vmdesk.core import config
    from vmdesk.core.bundle import Bundle

    home = ctx.tmp / "library"
    home.mkdir()
    for i in range(VMS):
        Bundle.create(home / f"vm{i:02}.vmdesk", config.from_dict({"name": f"vm{i:02}"}))
    ctx.facts["VMs in the library"] = VMS
    # A wide console, so that the printed URL is not wrapped.
    env = {**vmdesk_env(home), "COLUMNS": "1000", "NO_COLOR": "1"}
    server = subprocess.Popen(
        [vmdesk_cli(), "ui", "--port", "0", "--no-browser"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        printed = ""
        deadline = time.monotonic() + 60
        while (found := re.search(r"http://\S+", printed)) is None:
            line = server.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise RuntimeError(f"`vmdesk ui` printed no URL: {printed.strip()!r}")
            printed += line
        yield found.group(0)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    clients, requests = (5, 5) if ctx.smoke else (CLIENTS, REQUESTS)

    def rounds(url: str) -> Round:
        def one(round_: int) -> dict[str, float]:
            latencies = load(url, clients, requests)
            return {P99: percentile(latencies, 0.99), MEDIAN: percentile(latencies, 0.5)}

        return one

    if ctx.web_url is not None:
        yield rounds(ctx.web_url)
    else:
        with _served(ctx) as url:
            yield rounds(url)


def judge(fig: Figures) -> tuple[str, Status]:
    p99 = fig.median(P99)
    status: Status = "pass" if p99 <= GOAL_MS else "fail"
    return f"p99 {p99:.1f} ms (median request {fig.median(MEDIAN):.1f} ms)", status


MEASURE = Measure(
    key="P8",
    title=f"REST `GET /api/vms` with {CLIENTS} concurrent clients",
    goal=f"p99 <= {GOAL_MS:.0f} ms",
    session=session,
    judge=judge,
    requires=_requires,
    rounds=5,
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
