"""The second launch's fast path: which command lines are handed to a running app as they
are, and which take the full command (bundles to import, odd options, bad pages)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vmdesk.cli import fast_app
from vmdesk.desktop import instance


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        (["app"], {"page": "/"}),
        (["app", "--page", "/new"], {"page": "/new"}),
        (["app", "--console", "web"], {"console": "web"}),
        (["app", "--page", "/new", "--console", "web"], {"console": "web"}),
        (["open"], {"page": "/"}),
        (["open", "--show-errors"], {"page": "/"}),
        (["open", "--show-errors", "vmdesk://new"], {"page": "/new"}),
        (["open", "vmdesk://vm/web"], {"page": "/vms/web"}),
        (["open", "vmdesk://console/web"], {"console": "web"}),
    ],
)
def test_what_is_handed_over(args: list[str], wanted: dict[str, str]) -> None:
    assert fast_app.request(args) == wanted


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["app", "--help"],
        ["app", "--page"],
        ["app", "--page", "http://evil.example/"],
        ["app", "--console", "--page"],
        ["open", "/home/me/web.vmdesk"],  # a bundle: it may need importing first
        ["open", "file:///home/me/web.vmdesk"],
        ["open", "vmdesk://vm/..%2Fetc"],  # the full command says what is wrong
        ["open", "vmdesk://new", "vmdesk://new"],
    ],
)
def test_what_takes_the_full_command(args: list[str]) -> None:
    assert fast_app.request(args) is None


def test_it_hands_over_to_a_running_app_and_only_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("VMDESK_HOME", str(tmp_path / "library"))
    assert fast_app.run(["app", "--page", "/new"]) is False  # no app: the full command runs
    seen: list[dict[str, str]] = []
    claimed = instance.claim(tmp_path / "library", {}, lambda r: seen.append(r) or {"ok": "1"})
    assert isinstance(claimed, instance.Listener)
    try:
        assert fast_app.run(["app", "--page", "/new"]) is True
    finally:
        claimed.close()
    assert seen == [{"page": "/new"}] and fast_app.ALREADY_OPEN in capsys.readouterr().out


QUITS_WITH_A_STUCK_THREAD = """
import sys, threading
from vmdesk.cli import main
from vmdesk.desktop import launcher

def launch(page="/", console=None):
    # What the window toolkit can leave behind: a thread waiting on a closed window.
    threading.Thread(target=threading.Event().wait, name="stuck").start()
    print("the app quit", file=sys.stderr)
    return "quit"

launcher.launch = launch
sys.argv = ["vmdesk", *sys.argv[1:]]
main.main()
"""


@pytest.mark.parametrize("args", [["app"], ["open"]])
def test_once_the_app_quits_the_process_ends(args: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "VMDESK_HOME": str(tmp_path / "lib")}
    done = subprocess.run(
        [sys.executable, "-c", QUITS_WITH_A_STUCK_THREAD, *args], env=env, timeout=60,
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "the app quit" in done.stderr  # what it printed before it ended is all there
