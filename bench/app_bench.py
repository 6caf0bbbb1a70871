"""P24: the desktop app as a person meets it: `vmdesk app` from nothing until its window is
on the screen, and a second launch (the menu entry clicked again, a vmdesk:// link), made
3 s after the first's window appeared, until it has handed its page to the running app and
returned (goals: window <= 3 s, second launch <= 100 ms median). Both are whole processes,
on an X server of the benchmark's own (Xvfb) with a session bus of its own and a library
of 3 VMs; the second launch is paired with `python -c pass`.

    .venv/bin/python -m bench.app_bench [--rounds N]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import own_desktop
from bench.common import (
    Context,
    Figures,
    Measure,
    Pair,
    Round,
    Status,
    missing,
    ms_since,
    paired,
    timed_run,
    vmdesk_cli,
    vmdesk_env,
)

WINDOW_GOAL_MS, HANDOVER_GOAL_MS = 3000.0, 100.0
SETTLE_S = 3.0
WINDOW, HANDOVER, REFERENCE = "app window", "second launch", "python -c pass"


@contextmanager
def _desktop(tmp: Path) -> Iterator[dict[str, str]]:
    """An X display and a session bus: the variables the app needs to find them."""
    with own_desktop.x_server() as display, own_desktop.session_bus(tmp) as address:
        (tmp / "run").mkdir(mode=0o700)
        yield {"DISPLAY": display, "DBUS_SESSION_BUS_ADDRESS": address,
               "XDG_RUNTIME_DIR": str(tmp / "run"), "NO_AT_BRIDGE": "1"}  # fmt: skip


def _window_up(env: dict[str, str]) -> tuple[float, subprocess.Popen[bytes]]:
    """Milliseconds from `vmdesk app` to its window mapped; the app is left running."""
    start = time.perf_counter()
    app = subprocess.Popen([vmdesk_cli(), "app"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # fmt: skip
    search = ["xdotool", "search", "--sync", "--onlyvisible", "--name", "^VM-Desk$"]
    subprocess.run(search, env=env, check=True, stdout=subprocess.DEVNULL, timeout=60)
    return ms_since(start), app


@contextmanager
def session(ctx: Context) -> Iterator[Round]:
    from vmdesk.core import config
    from vmdesk.core.bundle import Bundle

    home = ctx.tmp / "library"
    home.mkdir()
    for name in ("web", "db", "desktop"):
        Bundle.create(home / f"{name}.vmdesk", config.from_dict({"name": name}))
    with _desktop(ctx.tmp) as desktop:
        env = {**vmdesk_env(home), **desktop}

        def one_round(round_: int) -> dict[str, float]:
            window, app = _window_up(env)
            time.sleep(SETTLE_S)  # a second click comes once the first has shown the library
            try:
                cases = {
                    HANDOVER: lambda: timed_run([vmdesk_cli(), "app", "--page", "/"], env),
                    REFERENCE: lambda: timed_run([sys.executable, "-c", "pass"], env),
                }
                return {WINDOW: window, **paired(cases, round_)}
            finally:
                app.terminate()
                app.wait(30)

        yield one_round
    shutil.rmtree(home, ignore_errors=True)


def judge(fig: Figures) -> tuple[str, Status]:
    window, handover = fig.median(WINDOW), fig.median(HANDOVER)
    ok = window <= WINDOW_GOAL_MS and handover <= HANDOVER_GOAL_MS
    text = (f"window in {window:.0f} ms, second launch {handover:.0f} ms "
            f"(python -c pass: {fig.median(REFERENCE):.0f} ms) median")  # fmt: skip
    return text, "pass" if ok else "fail"


def _requires(ctx: Context) -> str | None:
    import importlib.util

    if importlib.util.find_spec("webview") is None:
        return "pywebview is not installed (pip install 'vmdesk[app]')"
    return missing(programs=("Xvfb", "dbus-daemon", "xdotool"))


MEASURE = Measure(
    key="P24",
    title="the desktop app: its window, and a second launch",
    goal=f"window <= {WINDOW_GOAL_MS / 1000:.0f} s, second launch median <= "
    f"{HANDOVER_GOAL_MS:.0f} ms",
    session=session,
    judge=judge,
    requires=_requires,
    rounds=9,
    pairs=[Pair(f"{HANDOVER} / {REFERENCE}", HANDOVER, REFERENCE)],
    references=[REFERENCE],
)

if __name__ == "__main__":
    from bench.runner import main

    raise SystemExit(main(["--only", MEASURE.key, *sys.argv[1:]]))
