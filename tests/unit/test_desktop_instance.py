"""One app per library: the control socket a second launch hands its page to."""

from __future__ import annotations

import json
import socket
import sys
import threading
from pathlib import Path

import pytest

from vmdesk.core.errors import VMDeskError
from vmdesk.desktop import instance, launcher, windows


@pytest.fixture(autouse=True)
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    return tmp_path / "run"


def test_first_launch_listens_later_ones_hand_over(tmp_path: Path) -> None:
    seen: list[dict[str, str]] = []

    def handle(request: dict[str, str]) -> dict[str, str]:
        seen.append(request)
        return {"shown": request.get("page", "")}

    first = instance.claim(tmp_path / "lib", {"page": "/"}, handle)
    assert isinstance(first, instance.Listener)
    try:
        second = instance.claim(tmp_path / "lib", {"page": "/new"}, handle)
        assert second == {"shown": "/new"} and seen == [{"page": "/new"}]
        # Another library is another app.
        other = instance.claim(tmp_path / "other", {"page": "/"}, handle)
        assert isinstance(other, instance.Listener)
        other.close()
    finally:
        first.close()
    assert not instance.socket_path(tmp_path / "lib").exists()


def test_a_stale_socket_is_taken_over(tmp_path: Path) -> None:
    path = instance.socket_path(tmp_path / "lib")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))  # bound, never listening: like an app that crashed
    dead.close()
    claimed = instance.claim(tmp_path / "lib", {"page": "/"}, lambda r: {})
    assert isinstance(claimed, instance.Listener)
    claimed.close()


def test_the_socket_is_private(tmp_path: Path, runtime: Path) -> None:
    claimed = instance.claim(tmp_path / "lib", {"page": "/"}, lambda r: {})
    assert isinstance(claimed, instance.Listener)
    try:
        assert (runtime / "vmdesk").stat().st_mode & 0o777 == 0o700
    finally:
        claimed.close()


def test_nonsense_on_the_socket_gets_no_answer_and_no_crash(tmp_path: Path) -> None:
    calls: list[dict[str, str]] = []
    claimed = instance.claim(tmp_path / "lib", {"page": "/"}, lambda r: calls.append(r) or {})
    assert isinstance(claimed, instance.Listener)
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(str(claimed.path))
            conn.sendall(b"not json\n")
            assert conn.recv(100) == b""
        assert instance.hand_over(claimed.path, {"page": "/x"}) == {}
        assert calls == [{"page": "/x"}]
    finally:
        claimed.close()


def test_concurrent_launches_make_one_app(tmp_path: Path) -> None:
    results: list[object] = []
    barrier = threading.Barrier(4)

    def launch() -> None:
        barrier.wait()
        results.append(instance.claim(tmp_path / "lib", {"page": "/"}, lambda r: {"ok": "1"}))

    threads = [threading.Thread(target=launch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    listeners = [r for r in results if isinstance(r, instance.Listener)]
    assert len(listeners) == 1 and results.count({"ok": "1"}) == 3
    listeners[0].close()


def test_signin_script_carries_the_token_as_a_bearer_and_goes_to_the_page() -> None:
    script = windows.signin_script('to"ken', "/vms/a b")
    assert "'/api/session'" in script and "method: 'POST'" in script
    assert json.dumps('to"ken') in script and 'location.replace("/vms/a b")' in script
    assert windows.console_page("a/b") == "/vms/a%2Fb/console"


@pytest.mark.parametrize("page", ["http://evil.example/", "//evil.example", "vms", "/\\x"])
def test_pages_are_paths_of_the_app(page: str) -> None:
    with pytest.raises(VMDeskError, match="not a page of the app"):
        launcher.check_page(page)
    assert launcher.check_page("/vms/x") == "/vms/x"


def test_a_host_without_the_window_toolkit_is_told_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vmdesk.core.errors import HostToolMissing
    from vmdesk.desktop import toolkit

    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setitem(sys.modules, "webview", None)  # as if pywebview were not installed
    with pytest.raises(HostToolMissing, match="needs pywebview") as raised:
        toolkit.load()
    assert raised.value.hint is not None and "vmdesk[app]" in raised.value.hint
    monkeypatch.delitem(sys.modules, "webview")
    monkeypatch.setitem(sys.modules, "gi", None)  # pywebview, but no GTK bindings
    with pytest.raises(HostToolMissing, match="GTK 3 and WebKitGTK") as raised:
        toolkit.load()
    assert raised.value.hint is not None and "gir1.2-webkit2-4.1" in raised.value.hint
    monkeypatch.delenv("DISPLAY")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(VMDeskError, match="no DISPLAY"):
        toolkit.load()
