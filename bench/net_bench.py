"""P22: TCP throughput through NAT, iperf3 both ways: two desktop guests (x86_64, TCG), one
whose NIC uses passt and one QEMU's slirp, measured in turn (alternating which goes first)
in every round. Guest -> host: the guest's iperf3 client to a host server on 127.0.0.1,
reached at the guest's gateway; host -> guest: the host's client through a port forward
to the guest's server; and the guest downloading from the host (iperf3 -R: its own
connection, the data coming in). Goal: passt >= 2x slirp.

    .venv/bin/python -m bench.net_bench [--rounds N]
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import desktop_guest
from bench.common import Context, Figures, Measure, Round, Status

GOAL = 2.0
BACKENDS = ("passt", "slirp")
WAYS = ("guest->host", "download", "host->guest")
GUEST_PORT = 5201


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _in_guest(home: Path, name: str, command: str) -> str:
    return desktop_guest.run_in(home, ["sh", "-c", command], name)


def _mbit(report: str) -> float:
    end = json.loads(report[report.index("{") :])["end"]
    return float(end["sum_received"]["bits_per_second"]) / 1e6


def _prepare(forwards: dict[str, int]) -> Callable[[Path], None]:
    """Each VM's NIC on its backend, with a forward to its iperf3 server."""

    def prepare(home: Path) -> None:
        from vmdesk.core.library import Library
        from vmdesk.service import vms

        library = Library(home)
        for backend in BACKENDS:
            nic = vms.get(library, backend)["config"]["nics"][0]
            forward = {"protocol": "tcp", "host_address": "127.0.0.1",
                       "host_port": forwards[backend], "guest_port": GUEST_PORT}  # fmt: skip
            nic.update(backend=backend, forwards=[forward])
            vms.edit(library, backend, {"nics": [nic]})

    return prepare


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    seconds = 2 if ctx.smoke else 5
    forwards = {backend: _free_port() for backend in BACKENDS}
    host_port = _free_port()
    server = subprocess.Popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(host_port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        with desktop_guest.running(ctx, _prepare(forwards), names=BACKENDS) as home:
            gateways = {}
            for backend in BACKENDS:
                _in_guest(home, backend, f"iperf3 -s -D -p {GUEST_PORT}")
                route = _in_guest(home, backend, "ip route show default").split()
                gateways[backend] = route[route.index("via") + 1]

            def one(round_: int) -> dict[str, float]:
                got: dict[str, float] = {}
                order = BACKENDS if round_ % 2 == 0 else BACKENDS[::-1]
                for backend in order:
                    client = f"iperf3 -c {gateways[backend]} -p {host_port} -t {seconds} -J"
                    got[f"guest->host {backend}"] = _mbit(_in_guest(home, backend, client))
                    # the guest downloading: its own connection, the data coming in
                    got[f"download {backend}"] = _mbit(_in_guest(home, backend, client + " -R"))
                    done = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p",
                                           str(forwards[backend]), "-t", str(seconds), "-J"],
                                          capture_output=True, text=True, check=True)  # fmt: skip
                    got[f"host->guest {backend}"] = _mbit(done.stdout)
                for way in WAYS:
                    got[f"{way} gain"] = got[f"{way} passt"] / got[f"{way} slirp"]
                return got

            yield one
    finally:
        server.terminate()
        server.wait()


def judge(fig: Figures) -> tuple[str, Status]:
    gains = {way: fig.median(f"{way} gain") for way in WAYS}
    status: Status = "pass" if min(gains.values()) >= GOAL else "fail"
    parts = [f"{way} {gains[way]:.2f}x ({fig.median(f'{way} passt'):.0f} Mbit/s)" for way in WAYS]
    return "passt vs slirp: " + ", ".join(parts), status


def requires(ctx: Context) -> str | None:
    for program in ("iperf3", "passt"):
        if shutil.which(program) is None:
            return f"{program} is not installed on the host (scripts/setup.sh installs it)"
    return desktop_guest.requires(ctx)


UNITS = {f"{way} {b}": "Mbit/s" for way in WAYS for b in BACKENDS}
MEASURE = Measure(
    key="P22",
    title="NAT throughput, iperf3: passt vs slirp",
    goal=f"passt >= {GOAL:.0f}x slirp both ways",
    session=session,
    judge=judge,
    requires=requires,
    rounds=3,
    units={**UNITS, **{f"{way} gain": "x" for way in WAYS}},
    references=[m for m in UNITS if m.endswith("slirp")],
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
