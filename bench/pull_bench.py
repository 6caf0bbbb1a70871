"""P13: `vmdesk image pull` throughput (the library's download: streamed, hashed, fsynced,
renamed into the cache) from a local HTTP server, against `curl -o` of the same file in
the same round (goal: at least 0.9x curl's throughput, as a paired ratio).

The server sends the file with sendfile(2), so that the clients, not it, set the pace.

    .venv/bin/python -m bench.pull_bench [--rounds N]
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.common import Context, Figures, Measure, Pair, Round, Status, missing, ms_since, paired

GOAL = 0.9  # our throughput / curl's, per round
SIZE, SMOKE_SIZE = 256 << 20, 8 << 20


def _server(path: Path) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            size = path.stat().st_size
            self.send_response(200)
            self.send_header("content-length", str(size))
            self.end_headers()
            self.wfile.flush()
            with path.open("rb") as f:
                self.connection.sendfile(f)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    from vmdesk.images import downloads

    size = SMOKE_SIZE if ctx.smoke else SIZE
    source = ctx.tmp / "served.img"
    with source.open("wb") as out:
        for _ in range(size >> 20):
            out.write(os.urandom(1 << 20))
    digest = downloads.Digest("sha256", hashlib.sha256(source.read_bytes()).hexdigest())
    ctx.facts["file"] = f"{size >> 20} MiB of random bytes, sha256-checked by the pull"
    httpd = _server(source)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/served.img"
    out = ctx.tmp / "out"

    def pull() -> float:
        dest = out / "pull" / "served.img"
        start = time.perf_counter()
        downloads.fetch(url, dest, digest)
        took = ms_since(start)
        shutil.rmtree(out / "pull")
        return took

    def curl() -> float:
        dest = out / "curl.img"
        out.mkdir(exist_ok=True)
        start = time.perf_counter()
        subprocess.run(["curl", "-sS", "--fail", "-o", str(dest), url], check=True)
        took = ms_since(start)
        dest.unlink()
        return took

    def one(round_: int) -> dict[str, float]:
        figures = paired({"vmdesk pull": pull, "curl -o": curl}, round_)
        for name in list(figures):
            figures[f"{name} MiB/s"] = (size >> 20) / (figures[name] / 1000)
        return figures

    try:
        yield one
    finally:
        httpd.shutdown()
        httpd.server_close()


def judge(fig: Figures) -> tuple[str, Status]:
    ratio = 1 / fig.ratio("vmdesk pull / curl -o")  # time ratio -> throughput ratio
    status: Status = "pass" if ratio >= GOAL else "fail"
    return (
        f"{ratio:.2f}x curl's throughput (paired median; {fig.median('vmdesk pull MiB/s'):.0f} "
        f"vs {fig.median('curl -o MiB/s'):.0f} MiB/s)",
        status,
    )


MEASURE = Measure(
    key="P13",
    title="`vmdesk image pull` from a local HTTP server",
    goal=f"throughput >= {GOAL}x curl's (paired)",
    session=session,
    judge=judge,
    requires=lambda ctx: missing(programs=["curl"]),
    rounds=8,
    units={"vmdesk pull MiB/s": "MiB/s", "curl -o MiB/s": "MiB/s"},
    pairs=[Pair("vmdesk pull / curl -o", "vmdesk pull", "curl -o", goal_max=1 / GOAL)],
    references=["curl -o", "curl -o MiB/s"],
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
