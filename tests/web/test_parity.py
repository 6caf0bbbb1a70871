"""The CLI and the web API are two doors to one service: for a library with VMs in every
state (stopped, running, paused, suspended, crashed, broken) they give the same answers,
and the same errors, for the same references."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ImageGetter
from tests.web.conftest import LiveServer

pytestmark = pytest.mark.vm


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VMDESK_HOME": str(root), "VMDESK_ACCEL": "tcg"}
    return subprocess.run(
        [sys.executable, "-m", "vmdesk.cli.main", *args],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, timeout=180,
    )  # fmt: skip


def _ok(root: Path, *args: str) -> str:
    done = _cli(root, *args)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def _status(root: Path, name: str) -> str:
    return str(json.loads(_ok(root, "status", name, "--json"))["status"])


def _wait_status(root: Path, name: str, want: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (got := _status(root, name)) != want:
        assert time.monotonic() < deadline, f"{name} is {got}, not {want}"
        time.sleep(0.2)


def _library_in_every_state(root: Path) -> None:
    """stopped, running, paused, suspended, crashed and broken VMs (aarch64 tiny guests)."""
    for name in ("stopped", "running", "paused", "suspended", "crashed", "broken"):
        _ok(root, "create", name, "--image", "tiny-linux", "--arch", "aarch64")
    for name in ("running", "paused", "suspended", "crashed"):
        _ok(root, "start", name, "--wait-ready", "--timeout", "120")
    _ok(root, "pause", "paused")
    _ok(root, "suspend", "suspended")
    qemu = json.loads(_ok(root, "status", "crashed", "--json"))["engine_pid"]
    os.kill(int(qemu), signal.SIGKILL)
    _wait_status(root, "crashed", "crashed")
    (root / "broken.vmdesk" / "config.json").write_text("{ not json", encoding="utf-8")


def _same_error(root: Path, api: httpx.Client, ref: str, http: int, code: int) -> None:
    """`vmdesk show REF` and GET /api/vms/REF fail alike: the class's exit code and HTTP
    status, the same message and hint."""
    done = _cli(root, "show", ref)
    answer = api.get(f"/api/vms/{ref}")
    assert (done.returncode, answer.status_code) == (code, http), done.stderr
    body = answer.json()
    assert f"error: {body['error']}" in done.stderr and body["hint"] in done.stderr


def test_cli_and_api_agree_in_every_state(
    live: LiveServer, api: httpx.Client, tiny_image: ImageGetter
) -> None:
    tiny_image("aarch64")
    root = live.root
    _library_in_every_state(root)

    listed = {row["name"]: row["status"] for row in json.loads(_ok(root, "list", "--json"))}
    served = {row["name"]: row["status"] for row in api.get("/api/vms").json()}
    assert listed == served
    assert served == {
        "stopped": "stopped", "running": "running", "paused": "paused",
        "suspended": "suspended", "crashed": "crashed", "broken": "broken",
    }  # fmt: skip

    for name in ("stopped", "running", "paused", "suspended", "crashed"):
        shown: dict[str, Any] = json.loads(_ok(root, "show", name, "--json"))
        got = api.get(f"/api/vms/{name}")
        assert got.status_code == 200, got.text
        assert shown == got.json(), name
        assert shown["status"] == name
        # QEMU shares the clipboard (the SPICE agent's channel): on for a new VM, and given
        assert shown["config"]["clipboard"] is True
        assert {f["name"]: f["available"] for f in shown["features"]}["clipboard"] is True
    _same_error(root, api, "broken", 422, 2)  # a damaged description (ConfigError)
    _same_error(root, api, "nosuchvm", 404, 4)


def test_the_same_ambiguous_prefix_is_the_same_conflict(
    live: LiveServer, api: httpx.Client
) -> None:
    root = live.root
    for name, uuid in (("one", "abcdef01-0000-4000-8000-000000000001"),
                       ("two", "abcdef01-0000-4000-8000-000000000002")):  # fmt: skip
        _ok(root, "create", name, "--cpus", "1", "--memory", "256MiB")
        config = root / f"{name}.vmdesk" / "config.json"
        config.write_text(config.read_text().replace(json.loads(config.read_text())["uuid"], uuid))
    _same_error(root, api, "abcdef01", 409, 5)
    assert "'abcdef01' matches 2 VMs: one, two" in _cli(root, "show", "abcdef01").stderr
    started = _cli(root, "start", "abcdef01")  # the start fast path finds VMs the same way
    assert started.returncode == 5 and "matches 2 VMs: one, two" in started.stderr
    # one more character names one of them, through either door
    assert (
        json.loads(_ok(root, "show", "abcdef01-0000-4000-8000-000000000002", "--json"))["name"]
        == "two"
    )
    assert api.get("/api/vms/abcdef01-0000-4000-8000-000000000001").json()["name"] == "one"


def test_settings_give_the_same_vm_through_either_door(live: LiveServer, api: httpx.Client) -> None:
    """The CLI's flags and the API's `settings` go through the same rules (forwards on the
    first NIC, a kernel implies Linux boot)."""
    root = live.root
    kernel = root.parent / "vmlinuz"
    kernel.write_bytes(b"not really a kernel, but a file")
    _ok(root, "create", "by-cli", "--kernel", str(kernel), "--forward", "tcp:18080:80",
        "--cpus", "1", "--memory", "256MiB")  # fmt: skip
    made = api.post(
        "/api/vms",
        json={
            "config": {"name": "by-api"},
            "settings": {
                "kernel": str(kernel),
                "forwards": ["tcp:18081:80"],
                "cpus": 1,
                "memory": "256MiB",
            },
        },
    )
    assert made.status_code == 201, made.text
    cli_vm = json.loads(_ok(root, "show", "by-cli", "--json"))["config"]
    api_vm = api.get("/api/vms/by-api").json()["config"]
    for config in (cli_vm, api_vm):
        assert config["boot"]["kind"] == "linux" and config["boot"]["kernel"] == str(kernel)
        assert [f["guest_port"] for f in config["nics"][0]["forwards"]] == [80]
    bad = api.post("/api/vms", json={"config": {"name": "typo"}, "settings": {"forward": []}})
    assert bad.status_code == 422


def test_cli_and_api_agree_on_the_guest(
    live: LiveServer, api: httpx.Client, tiny_image: ImageGetter
) -> None:
    """`vmdesk ip NAME --json` and GET /api/vms/NAME/guest: the same error for a stopped VM,
    the same answer (of the same shape) for a running one, here one without qemu-ga."""
    tiny_image("aarch64")
    root = live.root
    _ok(root, "create", "quiet", "--image", "tiny-linux", "--arch", "aarch64")
    done = _cli(root, "ip", "quiet", "--json")
    answer = api.get("/api/vms/quiet/guest")
    assert (done.returncode, answer.status_code) == (5, 409), done.stderr
    body = answer.json()
    assert f"error: {body['error']}" in done.stderr and body["hint"] in done.stderr

    _ok(root, "start", "quiet")
    shown = json.loads(_ok(root, "ip", "quiet", "--json", "--wait", "0.5"))
    served = api.get("/api/vms/quiet/guest", params={"wait": 0.5}).json()
    assert shown == served
    assert set(served) == {"agent", "addresses", "ipv4", "ipv6", "os", "host_name"}
    assert served["agent"] == "not answering"
