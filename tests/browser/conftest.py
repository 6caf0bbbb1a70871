"""Browser tests: `vmdesk ui` served for real over a private library, driven by Playwright in
Debian's Chromium (Playwright's own browser download is not available on our machines).

Page screenshots of every step are kept in tests/browser/artifacts/TEST/ (git-ignored)."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, expect, sync_playwright

from tests.vm.conftest import desktop_image  # noqa: F401  (the fixture: the desktop image)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
ARTIFACTS = Path(__file__).parent / "artifacts"
URL = re.compile(r"http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]+)")
# Pages wait on the server, which waits on QEMU: on a busy 2-core machine 5 s is too short.
expect.set_options(timeout=20_000)


class UI:
    """A `vmdesk ui --no-browser --port 0` process over its own library."""

    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.env = {**os.environ, "VMDESK_HOME": str(home), "VMDESK_ACCEL": "tcg", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vmdesk.cli.main", "ui", "--no-browser", "--port", "0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**self.env, "COLUMNS": "200"}, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        printed = ""
        deadline = time.monotonic() + 30
        while (found := URL.search(printed)) is None:
            line = self.proc.stdout.readline()
            assert line, f"`vmdesk ui` ended without printing its URL:\n{printed}"
            assert time.monotonic() < deadline, f"`vmdesk ui` printed no URL:\n{printed}"
            printed += line
        self.url = found.group(0)  # with the token: what the user opens once
        self.base = f"http://127.0.0.1:{found.group(1)}"

    def cli(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "vmdesk.cli.main", *args],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, env=self.env,
            timeout=timeout,
        )  # fmt: skip
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done.stdout

    def close(self) -> None:
        from vmdesk.core.states import ENDED
        from vmdesk.supervisor import status as vmstatus

        for bundle in self.home.glob("*.vmdesk"):  # never leave a VM running
            if vmstatus.derive(bundle)["status"] not in ENDED:
                subprocess.run(
                    [sys.executable, "-m", "vmdesk.cli.main", "stop",
                     bundle.name.removesuffix(".vmdesk"), "--force"],
                    capture_output=True, stdin=subprocess.DEVNULL, env=self.env, timeout=60,
                )  # fmt: skip
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Chromium for one test. Not shared across tests: while Playwright's sync API is active
    it marks its asyncio loop as running in the main thread, which breaks every later test
    that runs asyncio code (QMP sessions) in the same process."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make setup` installs chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
    # Tests after this one run asyncio.run() in this thread.
    assert asyncio._get_running_loop() is None, "Playwright left its event loop running"


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[UI]:
    served = UI(tmp_path / "library")
    yield served
    served.close()


class GuestShell:
    """The root shell on a running VM's serial console, reached through its unix socket (as
    the supervisor serves it to every client), to check from inside the guest what the pages
    did. Separate from the page's own serial console, so its output is never mixed with
    what a test types there."""

    PROMPT = "vmdesk-tiny# "

    def __init__(self, bundle: Path) -> None:
        from vmdesk.engines.qemu.process import SerialConsole
        from vmdesk.supervisor import status as vmstatus

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(vmstatus.sockets_for(bundle).console))
        self.console = SerialConsole(sock, None)
        # The console's history is replayed to a new client; a shell that has only just
        # printed its prompt drops what is typed at once.
        self.console.wait_for(re.escape(self.PROMPT), 90)
        time.sleep(1)

    def run(self, command: str, timeout: float = 20) -> str:
        """What ``command`` printed. The output lies between two markers the shell works
        out (``$((1))``), so the echo of the typed line never matches them, even when the
        line is long enough to wrap on the 80-column console."""
        tag = f"MARK{secrets.token_hex(4)}-"
        start = self.console.mark()
        self.console.send(f" echo {tag}$((1)); {command}; echo {tag}$((2))")
        begin = self.console.wait_for(rf"^{tag}1\n", timeout, start=start)
        end = self.console.wait_for(rf"^{tag}2\n", timeout, start=begin.end())
        return self.console.text[begin.end() : end.start()].rstrip("\n")

    def close(self) -> None:
        self.console.close()


class PageErrors:
    """Uncaught errors in the page and console errors: a test fails if any happened."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def page_error(self, error: Error) -> None:
        self.errors.append(f"page: {error}")


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def page(browser: Browser, ui: UI, page_errors: PageErrors) -> Iterator[Page]:
    """A fresh browser profile that has opened the URL `vmdesk ui` printed (so it holds the
    session cookie, as a user's browser would)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    opened = context.new_page()
    opened.on("console", page_errors.console)
    opened.on("pageerror", page_errors.page_error)
    opened.goto(ui.url)
    yield opened
    context.close()


Shot = Callable[[str], None]


@pytest.fixture
def shot(request: pytest.FixtureRequest, page: Page) -> Shot:
    """``shot("step")`` saves a full-page screenshot as artifacts/TEST/NN-step.png."""
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    count = 0

    def take(step: str) -> None:
        nonlocal count
        count += 1
        page.screenshot(path=folder / f"{count:02d}-{step}.png", full_page=True)

    return take
