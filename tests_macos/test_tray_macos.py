"""The menu-bar icon against the real AppKit (macOS only; skipped elsewhere. Run from a
terminal on the Mac's desktop, not over SSH: see docs/macos-test-plan.md). An icon appears
in the menu bar for a moment.

pytest's thread is the main thread here, as pywebview's is in the app: ``start()`` puts the
icon up at once, and the test turns the main run loop by hand (what NSApplication.run does)
so that what the tray's worker threads hand to the main thread with callAfter happens."""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from typing import Any

from vmdesk.desktop import tray_macos
from vmdesk.desktop.tray_macos import MenuBarTray
from vmdesk.desktop.tray_menu import VMRow


def appkit() -> tuple[Any, Any]:
    return importlib.import_module("AppKit"), importlib.import_module("Foundation")


def application() -> Any:
    kit, _ = appkit()
    app = kit.NSApplication.sharedApplication()
    app.setActivationPolicy_(kit.NSApplicationActivationPolicyAccessory)  # no Dock icon
    app.finishLaunching()  # what NSApplication.run does first; pump() is the rest of it
    return app


def pump(app: Any, until: Callable[[], bool] = lambda: False, seconds: float = 5.0) -> bool:
    """Turn the main run loop (callAfter's work, timers) and hand AppKit its events until
    ``until()`` or ``seconds`` have passed."""
    kit, foundation = appkit()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        foundation.NSRunLoop.mainRunLoop().runMode_beforeDate_(
            foundation.NSDefaultRunLoopMode, foundation.NSDate.dateWithTimeIntervalSinceNow_(0.02)
        )
        while True:
            event = app.nextEventMatchingMask_untilDate_inMode_dequeue_(
                kit.NSEventMaskAny, foundation.NSDate.distantPast(), kit.NSDefaultRunLoopMode, True
            )
            if event is None:
                break
            app.sendEvent_(event)
        if until():
            return True
    return until()


def read_back(menu: Any) -> list[Any]:
    """An NSMenu's titles, a submenu's item as (title, its titles), a separator as ---."""
    shown: list[Any] = []
    for index in range(menu.numberOfItems()):
        item = menu.itemAtIndex_(index)
        if item.isSeparatorItem():
            shown.append("---")
        elif item.hasSubmenu():
            shown.append((str(item.title()), read_back(item.submenu())))
        else:
            shown.append(str(item.title()))
    return shown


def test_the_icon_is_a_template_image_appkit_reads() -> None:
    application()
    image = tray_macos.template_image(tray_macos.Cocoa.load())
    assert image is not None, "NSImage did not read the icon's PDF"
    assert image.isValid() and image.isTemplate()
    size = image.size()
    assert (size.width, size.height) == (tray_macos.ICON_POINTS, tray_macos.ICON_POINTS)


def test_the_menu_bar_icon_shows_the_vms_and_acts_on_a_click() -> None:
    app = application()
    current = [VMRow("web", "running"), VMRow("db", "stopped")]
    acted: list[tuple[tuple[str, ...], bool]] = []
    done = threading.Event()

    def on_action(action: tuple[str, ...]) -> None:
        acted.append((action, threading.current_thread() is threading.main_thread()))
        done.set()

    tray = MenuBarTray(lambda: list(current), lambda: True, on_action)
    tray.start()
    try:
        item = tray.status_item
        assert item is not None, "start() on the main thread puts the icon up at once"
        pump(app, seconds=0.3)  # the menu bar draws it
        button = item.button()
        image = button.image()
        assert (image is not None and image.isTemplate()) or button.title() == "VM-Desk"
        assert button.toolTip() == "1 of 2 VMs running"
        menu = item.menu()
        assert not menu.autoenablesItems()
        assert read_back(menu) == [
            "Open VM-Desk",
            "---",
            ("web — running", ["Stop", "Suspend", "Open console"]),
            ("db — stopped", ["Start", "Open console"]),
            "---",
            ("Quit", ["Leave 1 VM running and quit", "Suspend all and quit", "Stop all and quit"]),
        ]
        root = tray.menu()[1]
        tags = [menu.itemAtIndex_(i).tag() for i in range(menu.numberOfItems())]
        assert tags == [child.id for child in root.children]

        db = menu.itemAtIndex_(3).submenu()
        db.performActionForItemAtIndex_(0)  # db's Start, as a click sends it
        assert pump(app, done.is_set), "the click did not reach on_action"
        assert acted == [(("start", "db"), False)]  # on an action thread, not the main one
        done.clear()
        menu.performActionForItemAtIndex_(0)
        assert pump(app, done.is_set)
        assert acted[-1] == (("show",), False)

        current[:] = [VMRow("web", "stopped"), VMRow("db", "running")]
        tray.refresh()  # the worker rebuilds; the main thread's next turn shows it
        assert pump(app, lambda: menu.itemAtIndex_(2).title() == "web — stopped"), read_back(menu)
        assert item.menu().numberOfItems() == menu.numberOfItems()
        assert read_back(menu)[2:4] == [
            ("web — stopped", ["Start", "Open console"]),
            ("db — running", ["Stop", "Suspend", "Open console"]),
        ]
        assert button.toolTip() == "1 of 2 VMs running"

        current[:] = [VMRow("web", "stopped"), VMRow("db", "stopped")]
        tray.refresh()
        assert pump(app, lambda: button.toolTip() == "No VM running")
        assert read_back(menu)[-1] == "Quit"  # nothing live: no question
    finally:
        tray.stop()
    assert tray.status_item is None


def test_an_empty_library_has_a_disabled_line() -> None:
    app = application()
    tray = MenuBarTray(lambda: [], lambda: True, lambda action: None)
    tray.start()
    try:
        menu = tray.status_item.menu()
        pump(app, seconds=0.1)
        assert read_back(menu)[2:4] == ["No virtual machines", "Create a VM…"]
        assert not menu.itemAtIndex_(2).isEnabled()
        assert menu.itemAtIndex_(3).isEnabled()
    finally:
        tray.stop()
