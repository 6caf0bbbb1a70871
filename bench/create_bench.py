"""P11: `vmdesk create --image` with the image already pulled, as a whole process: a 64 GiB
disk against a 1 GiB one (goal: median <= 200 ms each, and 64 GiB / 1 GiB <= 1.2).

The image is served once by a local HTTP server and pulled into a private cache; each round
then creates a VM from it (its disk an overlay on the image, with a cloud-init seed, as a
catalog image gets) with each size, alternating which goes first, and deletes them again.

    .venv/bin/python -m bench.create_bench [--rounds N]
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.common import (
    Context,
    Figures,
    Measure,
    Pair,
    Round,
    Status,
    missing,
    paired,
    timed_run,
    vmdesk_cli,
    vmdesk_env,
)

GOAL_MS = 200.0
GOAL_RATIO = 1.2
SIZES = {"64 GiB disk": "64GiB", "1 GiB disk": "1GiB"}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f bench"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _served(directory: Path) -> Iterator[str]:
    handler = partial(_Quiet, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _image(directory: Path) -> tuple[Path, str]:
    """A qcow2 image with some data in it, as a cloud image is (a 1 GiB disk)."""
    image = directory / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "1G"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 32M", str(image)],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return image, "sha256:" + hashlib.sha256(image.read_bytes()).hexdigest()


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    served = ctx.tmp / "served"
    served.mkdir()
    image, digest = _image(served)
    env = {**vmdesk_env(ctx.tmp / "library"), "VMDESK_CACHE": str(ctx.tmp / "cache")}
    key = ctx.tmp / "id.pub"
    key.write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f b\n"
    )
    cli = vmdesk_cli()
    with _served(served) as base:
        url = f"{base}/{image.name}"
        subprocess.run([cli, "image", "pull", url, "--digest", digest], check=True, env=env,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    ctx.facts["image"] = f"qcow2, 1 GiB virtual, {image.stat().st_size >> 20} MiB file"

    def create(size: str) -> float:
        argv = [cli, "create", "vm", "--image", url, "--digest", digest, "--disk-size", size,
                "--user", "bench", "--ssh-key", str(key), "--memory", "256MiB"]  # fmt: skip
        took = timed_run(argv, env)
        subprocess.run([cli, "delete", "vm", "--yes"], check=True, env=env,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        return took

    cases = {name: partial(create, size) for name, size in SIZES.items()}
    yield lambda round_: paired(cases, round_)


def judge(fig: Figures) -> tuple[str, Status]:
    big, small = fig.median("64 GiB disk"), fig.median("1 GiB disk")
    ratio = fig.ratio("64 GiB / 1 GiB")
    ok = big <= GOAL_MS and small <= GOAL_MS and ratio <= GOAL_RATIO
    text = f"64 GiB {big:.0f} ms, 1 GiB {small:.0f} ms median; paired ratio {ratio:.3f}"
    return text, "pass" if ok else "fail"


MEASURE = Measure(
    key="P11",
    title="`vmdesk create --image` (pulled already): 64 GiB vs 1 GiB disk",
    goal=f"median <= {GOAL_MS:.0f} ms, ratio <= {GOAL_RATIO}",
    session=session,
    judge=judge,
    requires=lambda ctx: missing(programs=("qemu-img", "qemu-io")),
    rounds=11,
    pairs=[Pair("64 GiB / 1 GiB", "64 GiB disk", "1 GiB disk")],
    references=[],
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
