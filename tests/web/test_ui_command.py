"""`vmdesk ui` as a user runs it: a URL with a token on 127.0.0.1, nothing else bound."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from vmdesk.web import server


def _launch(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "VMDESK_HOME": str(tmp_path / "library"), "BROWSER": "false"}
    return subprocess.Popen(
        [sys.executable, "-m", "vmdesk.cli.main", "ui", "--no-browser", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip


def _wait_until_serving(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=5)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.1)


def test_ui_prints_a_url_whose_token_opens_the_api(tmp_path: Path) -> None:
    proc = _launch(tmp_path, "--port", "0")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]+)", line)
        assert found, line
        port, token = int(found[1]), found[2]
        assert len(token) >= 32
        deadline = time.monotonic() + 20
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=10, follow_redirects=True
        ) as client:
            while True:
                try:
                    first = client.get(f"/?token={token}")
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline, "the server did not come up"
                    time.sleep(0.1)
            assert first.status_code == 200  # followed the redirect, with the cookie
            assert client.get("/api/vms").json() == []
        # bound to the loopback address only
        listening = Path("/proc/net/tcp").read_text()
        assert f"0100007F:{port:04X}" in listening and f"00000000:{port:04X}" not in listening
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    taken = server.bind(server.LOOPBACK, 0)
    try:
        proc = _launch(tmp_path, "--port", str(taken.getsockname()[1]))
        out, _ = proc.communicate(timeout=30)
    finally:
        taken.close()
    assert proc.returncode == 5, out
    assert "already in use" in out and "--port 0" in out


def test_listen_binds_that_address_and_says_so(tmp_path: Path) -> None:
    proc = _launch(tmp_path, "--port", "0", "--listen", "127.0.0.2")
    try:
        assert proc.stdout is not None
        printed = proc.stdout.readline() + proc.stdout.readline() + proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.2:(\d+)/\?token=", printed)
        assert found, printed
        assert "reachable from other machines" in printed and "plain HTTP" in printed
        port = int(found[1])
        _wait_until_serving(f"http://127.0.0.2:{port}/api/vms")  # answers 401: no token
        listening = Path("/proc/net/tcp").read_text()
        assert f"0200007F:{port:04X}" in listening and f"0100007F:{port:04X}" not in listening
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
