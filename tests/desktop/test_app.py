"""`vmdesk app` on a desktop of its own (Xvfb, a session bus): its window shows the
library, a second launch hands over instead of serving again, and the tray's menu lists
the VMs and starts, opens and stops them for real."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ImageGetter
from tests.desktop import menu_client
from tests.desktop.conftest import Desktop, Notifications, until
from vmdesk.service import library as service_library
from vmdesk.service import lifecycle


def _listening(pid: int) -> list[str]:
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if f"pid={pid}," in line]


def _stop(app: subprocess.Popen[str]) -> str:
    if app.poll() is None:
        app.send_signal(signal.SIGTERM)
    _, err = app.communicate(timeout=30)
    return err


def test_window_shows_the_library_and_a_second_launch_hands_over(
    desktop: Desktop, tmp_path: Path
) -> None:
    made = desktop.vmdesk("create", "ocrcheck")
    assert made.returncode == 0, made.stderr
    app = desktop.app()
    try:
        until(lambda: desktop.titled("VM-Desk"), 60, "the app's window")
        wid = desktop.titled("VM-Desk")[0]
        assert "VM-Desk" in desktop.wm_class(wid)  # what the .desktop file's StartupWMClass names
        # Its pixels are the library: the VM's name and state, read back from the screen.
        text = until(lambda: (t := desktop.screen_text(tmp_path / "s.png")) and
                     "ocrcheck" in t and t, 60, "the library on screen")  # fmt: skip
        assert "Library" in str(text) and "Stopped" in str(text)
        servers = _listening(app.pid)
        assert len(servers) == 1 and "127.0.0.1:" in servers[0]  # loopback only

        again = desktop.vmdesk("app", "--console", "ocrcheck", timeout=30)
        assert again.returncode == 0 and "already open" in again.stdout, again.stderr
        until(lambda: desktop.titled("ocrcheck — VM-Desk"), 60, "the console window")
        assert _listening(app.pid) == servers  # no second server, same port
        assert app.poll() is None
        shown = desktop.vmdesk("app", "--console", "ocrcheck", timeout=30)
        assert shown.returncode == 0
        assert len(desktop.titled("ocrcheck — VM-Desk")) == 1  # one window per console
    finally:
        _stop(app)


@pytest.mark.usefixtures("window_manager")
def test_closing_the_window_leaves_the_app_in_the_tray(desktop: Desktop) -> None:
    app = desktop.app()
    try:
        until(lambda: desktop.titled("VM-Desk"), 60, "the app's window")
        item = until(lambda: menu_client.item_names(desktop.bus), 30, "the tray icon")[0]
        desktop.close("VM-Desk")
        until(lambda: not desktop.titled("VM-Desk"), 20, "the window to close")
        assert app.poll() is None and menu_client.item_names(desktop.bus) == [item]
        menu = menu_client.layout(desktop.bus, item)
        menu_client.click(desktop.bus, item, menu["Open VM-Desk"][0])
        until(lambda: desktop.titled("VM-Desk"), 20, "the window back from the tray")
        menu_client.click(desktop.bus, item, menu["Quit"][0])  # nothing runs: no question
        assert app.wait(30) == 0
    finally:
        _stop(app)
    # Without a tray to come back from, closing the window quits the app.
    app = desktop.app(DBUS_SESSION_BUS_ADDRESS="unix:path=/nonexistent")
    try:
        until(lambda: desktop.titled("VM-Desk"), 60, "the app's window")
        desktop.close("VM-Desk")
        assert app.wait(30) == 0
    finally:
        err = _stop(app)
    assert "no tray icon" in err


def test_a_menu_action_that_fails_says_why_in_a_notification(
    desktop: Desktop, notifications: Notifications, tmp_path: Path
) -> None:
    made = desktop.vmdesk("create", "nostart")
    assert made.returncode == 0, made.stderr
    bare = tmp_path / "bin"
    bare.mkdir()
    app = desktop.app(PATH=str(bare))  # no QEMU on this PATH: the VM cannot start
    try:
        item = until(lambda: menu_client.item_names(desktop.bus), 60, "the tray icon")[0]
        menu = until(lambda: (m := menu_client.layout(desktop.bus, item)) and
                     "nostart — stopped" in m and m, 30, "the VM in the menu")  # fmt: skip
        assert notifications.shown() == []
        menu_client.click(desktop.bus, item, menu["nostart — stopped"][1]["Start"][0])
        shown = until(notifications.shown, 30, "a notification")
    finally:
        err = _stop(app)
    [(summary, body)] = shown
    assert summary == "VM-Desk could not start nostart"
    assert "was not found (install QEMU: `sudo apt-get install qemu-system-" in body  # the fix
    assert f"start nostart: {body}" in err  # and printed, as always


def test_a_first_run_without_qemu_says_what_to_install(desktop: Desktop, tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    app = desktop.app(PATH=str(bare))  # no QEMU, no qemu-img on this PATH
    try:
        text = until(lambda: (t := desktop.screen_text(tmp_path / "s.png")) and
                     "run VMs yet" in t and t, 60, "the first-run banner")  # fmt: skip
        assert "sudo apt-get install qemu-utils" in text  # the fix
        assert "No virtual machines yet" in text and "New VM" in text  # the way in
    finally:
        _stop(app)


def test_a_bad_link_from_the_desktop_is_shown_in_a_dialog(desktop: Desktop, tmp_path: Path) -> None:
    """What the menu entry runs (`vmdesk open --show-errors %u`) has no terminal."""
    opened = subprocess.Popen([desktop.program, "open", "--show-errors", "vmdesk://vm/..%2Fetc"],
                              env=desktop.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wid = until(lambda: desktop.titled("VM-Desk"), 30, "the error dialog")[0]
        shot = tmp_path / "s.png"
        text = until(lambda: (t := desktop.screen_text(shot, wid, zoom=200)) and
                     "not a VM name" in t and "letters, digits" in t and t, 30,
                     "the error and its hint on screen")  # fmt: skip
        assert "Close" in text
        subprocess.run(["xdotool", "windowfocus", "--sync", wid, "key", "Return"],
                       env=desktop.env, check=True)  # fmt: skip
        _, err = opened.communicate(timeout=30)
    finally:
        if opened.poll() is None:
            opened.kill()
    assert opened.returncode == 2 and "not a VM name" in err  # and printed, as always


def test_without_a_display_or_with_a_bad_page_it_says_what_to_do(desktop: Desktop) -> None:
    bare = {k: v for k, v in desktop.env.items() if k != "DISPLAY"}
    run = subprocess.run([desktop.program, "app"], env=bare, capture_output=True, text=True,
                         timeout=30)  # fmt: skip
    assert run.returncode != 0 and "no DISPLAY" in run.stderr and "vmdesk ui" in run.stderr
    bad = desktop.vmdesk("app", "--page", "http://evil.example/")
    assert bad.returncode != 0 and "not a page of the app" in bad.stderr


@pytest.mark.vm
def test_tray_lists_starts_opens_and_stops_vms(desktop: Desktop, tiny_image: ImageGetter) -> None:
    tiny_image("aarch64")
    made = desktop.vmdesk("create", "traytest", "--image", "tiny-linux", "--arch", "aarch64")
    assert made.returncode == 0, made.stderr
    app = desktop.app()
    library = service_library.open(desktop.root)
    try:
        names = until(lambda: menu_client.item_names(desktop.bus), 60, "the tray icon")
        item = names[0]
        menu = menu_client.layout(desktop.bus, item)
        assert "Open VM-Desk" in menu and "traytest — stopped" in menu, menu
        actions = menu["traytest — stopped"][1]
        assert set(actions) >= {"Start", "Open console"} and "Stop" not in actions
        menu_client.click(desktop.bus, item, actions["Start"][0])
        until(lambda: lifecycle.status(library, "traytest")["status"] == "running", 120,
              "the VM started from the tray")  # fmt: skip
        menu = until(lambda: (m := menu_client.layout(desktop.bus, item)) and
                     "traytest — running" in m and m, 30, "the menu to follow")  # fmt: skip
        actions = menu["traytest — running"][1]
        assert {"Stop", "Suspend", "Open console"} <= set(actions)

        menu_client.click(desktop.bus, item, actions["Open console"][0])
        until(lambda: desktop.titled("traytest — VM-Desk"), 60, "the console window")

        quit_menu = menu["Quit"][1]
        asked = {"Leave 1 VM running and quit", "Suspend all and quit", "Stop all and quit"}
        assert set(quit_menu) == asked, quit_menu
        menu_client.click(desktop.bus, item, quit_menu["Leave 1 VM running and quit"][0])
        assert app.wait(60) == 0 and not desktop.titled("VM-Desk")
        assert lifecycle.status(library, "traytest")["status"] == "running"  # left running

        app = desktop.app()  # the next launch finds it running, and stops it on the way out
        names = until(lambda: menu_client.item_names(desktop.bus), 60, "the tray icon again")
        menu = menu_client.layout(desktop.bus, names[0])
        assert "traytest — running" in menu, menu
        menu_client.click(desktop.bus, names[0], menu["Quit"][1]["Stop all and quit"][0])
        assert app.wait(90) == 0 and not desktop.titled("VM-Desk")
        assert lifecycle.status(library, "traytest")["status"] == "stopped"
    finally:
        err = _stop(app)
        if lifecycle.status(library, "traytest")["status"] == "running":
            lifecycle.stop(library, "traytest", force=True)
    assert not re.search(r"Traceback", err), err
