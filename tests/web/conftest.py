"""The web app served for real (uvicorn on a free loopback port, in a thread) over a
private library, and an HTTP client that carries the token."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from vmdesk.core.states import ENDED
from vmdesk.service import library as service_library
from vmdesk.service import lifecycle
from vmdesk.supervisor import status as vmstatus
from vmdesk.web import server

TOKEN = "test-token-0123456789"


class LiveServer:
    def __init__(self, root: Path, listen: str | None = None) -> None:
        self.root = root
        self.sock = server.bind(listen or server.LOOPBACK, 0)
        self.port = self.sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = server.server(self.sock, TOKEN, root, listen=listen)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)

    def client(self, **headers: str) -> httpx.Client:
        """A client authenticated with the bearer token (unless headers say otherwise)."""
        return httpx.Client(
            base_url=self.base,
            headers={"authorization": f"Bearer {TOKEN}", **headers},
            timeout=120,
        )

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def library_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private library (supervisors started from the app inherit it); no VM outlives
    the test."""
    root = tmp_path / "library"
    monkeypatch.setenv("VMDESK_HOME", str(root))
    monkeypatch.setenv("VMDESK_ACCEL", "tcg")
    yield root
    library = service_library.open(root)
    for bundle in library.bundles():
        if vmstatus.derive(bundle.path)["status"] not in ENDED:
            lifecycle.stop(library, bundle.dir_name.removesuffix(".vmdesk"), force=True)


@pytest.fixture
def live(library_root: Path) -> Iterator[LiveServer]:
    served = LiveServer(library_root)
    yield served
    served.close()


@pytest.fixture
def api(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as client:
        yield client
