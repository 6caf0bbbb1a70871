"""The macOS menu-bar icon's parts that run anywhere: the NSMenu description built from the
tray menu (submenus, the Quit question, tags that are the items' ids, separators), the
tag-to-action lookup, the icon's PDF, and MenuBarTray driven against a recording fake of
AppKit (threads as on a Mac: AppKit work on the main thread, actions on others). The real
AppKit is tests_macos/test_tray_macos.py's, on a Mac."""

from __future__ import annotations

import importlib.util
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vmdesk.core.errors import HostToolMissing
from vmdesk.desktop import tray_macos, tray_menu
from vmdesk.desktop.tray_macos import MenuBarTray, NativeItem
from vmdesk.desktop.tray_menu import MenuItem, VMRow

TWO = [VMRow("web", "running"), VMRow("db", "stopped")]


def titles(items: tuple[NativeItem, ...]) -> list[str]:
    return ["---" if item.separator else item.title for item in items]


def pairs(model: MenuItem, native: tuple[NativeItem, ...]) -> Iterator[tuple[MenuItem, NativeItem]]:
    assert len(model.children) == len(native)
    for item, spec in zip(model.children, native, strict=True):
        yield item, spec
        yield from pairs(item, spec.children)


# -- the description ----------------------------------------------------------------------


def test_the_menu_as_appkit_is_told_it() -> None:
    root = tray_menu.build_menu(TWO, True)
    items = tray_macos.describe(root)
    assert titles(items) == ["Open VM-Desk", "---", "web — running", "db — stopped", "---", "Quit"]
    web, db = items[2], items[3]
    assert titles(web.children) == ["Stop", "Suspend", "Open console"]
    assert titles(db.children) == ["Start", "Open console"]
    assert not web.clickable and web.enabled  # a submenu opens, it does not act
    assert all(child.clickable and child.enabled for child in web.children + db.children)
    assert items[0].clickable
    for separator in (items[1], items[4]):
        assert separator.separator and not separator.clickable and not separator.children
    for item, spec in pairs(root, items):  # every tag is its item's id, all the way down
        assert spec.tag == item.id
        assert spec.separator == item.separator
        assert spec.enabled == (item.enabled and not item.separator)
        assert spec.title == ("" if item.separator else item.label)


def test_quit_asks_when_vms_run_and_not_otherwise() -> None:
    quit_item = tray_macos.describe(tray_menu.build_menu(TWO, True))[-1]
    assert quit_item.title == "Quit" and not quit_item.clickable
    assert titles(quit_item.children) == [
        "Leave 1 VM running and quit",
        "Suspend all and quit",
        "Stop all and quit",
    ]
    assert all(child.clickable for child in quit_item.children)
    idle = tray_menu.build_menu([VMRow("web", "stopped")], True)
    plain = tray_macos.describe(idle)[-1]
    assert (plain.title, plain.clickable, plain.children) == ("Quit", True, ())
    assert tray_macos.action_for(idle, plain.tag) == ("quit", "leave")


def test_an_empty_library() -> None:
    items = tray_macos.describe(tray_menu.build_menu([], True))
    assert titles(items) == [
        "Open VM-Desk",
        "---",
        "No virtual machines",
        "Create a VM…",
        "---",
        "Quit",
    ]
    empty, create = items[2], items[3]
    assert not empty.enabled and not empty.clickable
    assert create.enabled and create.clickable


def test_a_tag_names_its_action_and_nothing_else() -> None:
    root = tray_menu.build_menu(TWO, True)
    for item in tray_menu.walk(root):
        got = tray_macos.action_for(root, item.id)
        if item.id == tray_menu.ROOT_ID or item.separator or item.children:
            assert got is None, item
        else:
            assert got == item.action, item
    empty = tray_menu.build_menu([], True)
    disabled = next(i for i in tray_menu.walk(empty) if i.label == "No virtual machines")
    assert tray_macos.action_for(empty, disabled.id) is None
    absent = 1 + max(item.id for item in tray_menu.walk(root))
    assert tray_macos.action_for(root, absent) is None
    # A tag from an older menu: the same thing, or nothing when it is gone.
    stop_web = next(i for i in tray_menu.walk(root) if i.action == ("stop", "web"))
    later = tray_menu.build_menu([VMRow("web", "stopped"), VMRow("db", "stopped")], True)
    assert tray_macos.action_for(later, stop_web.id) is None
    start_db = next(i for i in tray_menu.walk(root) if i.action == ("start", "db"))
    assert tray_macos.action_for(later, start_db.id) == ("start", "db")


# -- the icon -------------------------------------------------------------------------------


def test_the_icon_is_a_well_formed_pdf() -> None:
    pdf = tray_macos.icon_pdf()
    assert pdf.startswith(b"%PDF-1.4\n") and pdf.endswith(b"%%EOF\n")
    startxref = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert pdf[startxref:].startswith(b"xref\n0 5\n")
    entries = pdf[startxref:].split(b"\n")[2:7]
    assert entries[0] == b"0000000000 65535 f "
    for number, entry in enumerate(entries[1:], start=1):
        assert len(entry) + 1 == 20  # the fixed-size entries PDF readers seek by
        assert pdf[int(entry[:10]) :].startswith(b"%d 0 obj\n" % number)
    stream = pdf.split(b"stream\n", 1)[1].split(b"\nendstream", 1)[0]
    assert b"/Length %d" % len(stream) in pdf


def test_the_icon_draws_the_svgs_shape(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "icon.pdf").write_bytes(tray_macos.icon_pdf())
    subprocess.run(
        ["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=pnggray", "-r72",
         f"-sOutputFile={tmp_path / 'icon.png'}", str(tmp_path / "icon.pdf")],
        check=True, timeout=60,
    )  # fmt: skip
    image = Image.open(tmp_path / "icon.png").convert("L")
    assert image.size == (64, 64)  # one pixel per SVG unit

    def ink(x: int, y: int) -> bool:  # SVG coordinates: y runs down
        return image.getpixel((x, y)) < 128  # type: ignore[operator]

    assert ink(6, 27) and ink(57, 27) and ink(32, 10) and ink(32, 44)  # the screen's frame
    assert not ink(12, 38) and not ink(50, 16)  # the screen, left open
    assert ink(23, 25) and ink(35, 25)  # the two marks
    assert not ink(29, 25)  # between them
    assert ink(32, 50) and ink(20, 54)  # the stand
    assert not ink(2, 2) and not ink(32, 47) and not ink(62, 60)


# -- MenuBarTray against a fake AppKit --------------------------------------------------------


class FakeNSObject:
    @classmethod
    def alloc(cls) -> Any:
        return cls()

    def init(self) -> Any:
        return self


class FakeButton:
    def __init__(self) -> None:
        self.title, self.tool_tip, self.image, self.accessibility_title = "", "", None, ""

    def setTitle_(self, title: str) -> None:
        self.title = title

    def setImage_(self, image: Any) -> None:
        self.image = image

    def setToolTip_(self, tip: str) -> None:
        self.tool_tip = tip

    def setAccessibilityTitle_(self, title: str) -> None:
        self.accessibility_title = title


class FakeStatusItem:
    def __init__(self, length: float) -> None:
        self.length, self._button, self._menu = length, FakeButton(), None

    def button(self) -> FakeButton:
        return self._button

    def setMenu_(self, menu: Any) -> None:
        self._menu = menu

    def menu(self) -> Any:
        return self._menu


class FakeStatusBar:
    def __init__(self) -> None:
        self.items: list[FakeStatusItem] = []

    def statusItemWithLength_(self, length: float) -> FakeStatusItem:
        assert threading.current_thread() is threading.main_thread(), "AppKit off the main thread"
        self.items.append(FakeStatusItem(length))
        return self.items[-1]

    def removeStatusItem_(self, item: FakeStatusItem) -> None:
        assert threading.current_thread() is threading.main_thread(), "AppKit off the main thread"
        self.items.remove(item)


class FakeMenuItem(FakeNSObject):
    def __init__(self) -> None:
        self._title, self._action, self._tag, self._enabled = "", None, 0, True
        self._target: Any = None
        self._submenu: Any = None
        self._separator = False

    @classmethod
    def separatorItem(cls) -> FakeMenuItem:
        item = cls()
        item._separator, item._enabled = True, False
        return item

    def initWithTitle_action_keyEquivalent_(self, title: str, action: Any, key: str) -> Any:
        assert key == ""
        self._title, self._action = title, action
        return self

    def title(self) -> str:
        return self._title

    def action(self) -> Any:
        return self._action

    def isSeparatorItem(self) -> bool:
        return self._separator

    def setTag_(self, tag: int) -> None:
        self._tag = tag

    def tag(self) -> int:
        return self._tag

    def setEnabled_(self, enabled: bool) -> None:
        self._enabled = enabled

    def isEnabled(self) -> bool:
        return self._enabled

    def setTarget_(self, target: Any) -> None:
        self._target = target

    def target(self) -> Any:
        return self._target

    def setSubmenu_(self, menu: Any) -> None:
        self._submenu = menu

    def submenu(self) -> Any:
        return self._submenu


class FakeMenu(FakeNSObject):
    def __init__(self) -> None:
        self.title, self.autoenables, self.delegate = "", True, None
        self.items: list[FakeMenuItem] = []

    def initWithTitle_(self, title: str) -> Any:
        self.title = title
        return self

    def setAutoenablesItems_(self, on: bool) -> None:
        self.autoenables = on

    def setDelegate_(self, delegate: Any) -> None:
        self.delegate = delegate

    def removeAllItems(self) -> None:
        assert threading.current_thread() is threading.main_thread(), "AppKit off the main thread"
        self.items.clear()

    def addItem_(self, item: FakeMenuItem) -> None:
        self.items.append(item)

    def performActionForItemAtIndex_(self, index: int) -> None:
        item = self.items[index]
        if item.isEnabled() and item.action() is not None and item.target() is not None:
            getattr(item.target(), item.action().replace(":", "_"))(item)


class FakeImage(FakeNSObject):
    def initWithData_(self, data: bytes) -> Any:
        self.data, self.size, self.template = data, None, False
        return self if data.startswith(b"%PDF") else None

    def isValid(self) -> bool:
        return True

    def setSize_(self, size: tuple[float, float]) -> None:
        self.size = size

    def setTemplate_(self, on: bool) -> None:
        self.template = on


class FakeCocoa(tray_macos.Cocoa):
    """AppKit and Foundation as far as the tray uses them; callAfter queues for pump()."""

    def __init__(self, images: bool = True) -> None:
        self.bar = FakeStatusBar()
        self.queued: list[Callable[[], None]] = []
        appkit = SimpleNamespace(
            NSApplication=SimpleNamespace(sharedApplication=lambda: None),
            NSStatusBar=SimpleNamespace(systemStatusBar=lambda: self.bar),
            NSVariableStatusItemLength=-1.0,
            NSMenu=FakeMenu,
            NSMenuItem=FakeMenuItem,
            NSImage=FakeImage if images else SimpleNamespace(alloc=lambda: _NoImage()),
        )
        foundation = SimpleNamespace(
            NSObject=FakeNSObject,
            NSThread=SimpleNamespace(
                isMainThread=lambda: threading.current_thread() is threading.main_thread()
            ),
            NSData=SimpleNamespace(dataWithBytes_length_=lambda data, n: bytes(data[:n])),
        )
        helper = SimpleNamespace(callAfter=lambda f, *args: self.queued.append(lambda: f(*args)))
        objc = SimpleNamespace(typedSelector=lambda signature: lambda method: method)
        super().__init__(appkit, foundation, helper, objc)

    def pump(self) -> int:
        """The main run loop's turn: what callAfter queued, here on the main thread."""
        work, self.queued[:] = list(self.queued), []
        for item in work:
            item()
        return len(work)


class _NoImage:
    def initWithData_(self, data: bytes) -> None:
        return None  # an AppKit that cannot read the PDF


def read_back(menu: FakeMenu) -> list[Any]:
    """The fake NSMenu's titles: a (title, [children]) pair for a submenu."""
    return [
        "---"
        if item.isSeparatorItem()
        else (item.title(), read_back(item.submenu()))
        if item.submenu() is not None
        else item.title()
        for item in menu.items
    ]


def settle(tray: MenuBarTray) -> None:
    """Wait for the menu worker's queued refresh (one worker thread: a no-op after it)."""
    tray._menu_worker.submit(lambda: None).result(10)


class Driver:
    def __init__(self, rows: list[VMRow], images: bool = True) -> None:
        self.rows = list(rows)
        self.row_calls = 0
        self.actions: list[tuple[tuple[str, ...], str]] = []
        self.acted = threading.Event()
        self.cocoa = FakeCocoa(images)
        self.tray = MenuBarTray(self._rows, lambda: True, self._on_action, cocoa=self.cocoa)

    def _rows(self) -> list[VMRow]:
        self.row_calls += 1
        return list(self.rows)

    def _on_action(self, action: tuple[str, ...]) -> None:
        self.actions.append((action, threading.current_thread().name))
        self.acted.set()

    def menu(self) -> FakeMenu:
        (item,) = self.cocoa.bar.items
        menu: FakeMenu = item.menu()
        return menu


@pytest.fixture
def driver() -> Iterator[Driver]:
    made = Driver(TWO)
    yield made
    made.tray.stop()


def test_start_on_the_main_thread_puts_the_menu_up_at_once(driver: Driver) -> None:
    driver.tray.start()
    assert driver.cocoa.queued == []  # the main thread: nothing left for later
    (item,) = driver.cocoa.bar.items
    assert item.length == -1.0
    button = item.button()
    assert isinstance(button.image, FakeImage) and button.image.template
    assert button.image.size == (18.0, 18.0) and button.image.data == tray_macos.icon_pdf()
    assert button.accessibility_title == "VM-Desk"
    assert button.tool_tip == "1 of 2 VMs running"
    menu = driver.menu()
    assert not menu.autoenables and menu.delegate is not None
    assert read_back(menu) == [
        "Open VM-Desk",
        "---",
        ("web — running", ["Stop", "Suspend", "Open console"]),
        ("db — stopped", ["Start", "Open console"]),
        "---",
        ("Quit", ["Leave 1 VM running and quit", "Suspend all and quit", "Stop all and quit"]),
    ]
    root = driver.tray.menu()[1]
    assert all(ns.tag() == item.id for ns, item in zip(menu.items, root.children, strict=True))
    assert not menu.items[2].submenu().autoenables


def test_without_an_image_it_shows_its_name() -> None:
    made = Driver(TWO, images=False)
    made.tray.start()
    button = made.cocoa.bar.items[0].button()
    assert (button.title, button.image) == ("VM-Desk", None)
    made.tray.stop()


def test_a_click_acts_on_an_action_thread(driver: Driver) -> None:
    driver.tray.start()
    menu = driver.menu()
    menu.items[3].submenu().performActionForItemAtIndex_(0)  # db's Start
    assert driver.acted.wait(10)
    ((action, thread),) = driver.actions
    assert action == ("start", "db")
    assert thread != threading.main_thread().name and thread.startswith("vmdesk-menubar-do")
    driver.acted.clear()
    menu.performActionForItemAtIndex_(0)
    assert driver.acted.wait(10) and driver.actions[-1][0] == ("show",)
    driver.tray._clicked(menu.items[2].tag())  # a submenu's own item: nothing to do
    driver.tray._clicked(987654321)  # an id no item has
    settle(driver.tray)
    assert len(driver.actions) == 2


def test_refresh_changes_appkit_only_when_the_menu_changed(driver: Driver) -> None:
    driver.tray.start()
    menu = driver.menu()
    first = list(menu.items)
    driver.tray.refresh()
    settle(driver.tray)
    assert driver.row_calls == 2 and driver.cocoa.queued == []  # the same menu: left alone
    assert menu.items == first
    driver.rows = [VMRow("web", "stopped"), VMRow("db", "running")]
    driver.tray.refresh()
    settle(driver.tray)
    assert menu.items == first  # not yet: AppKit is changed on the main thread only
    assert driver.cocoa.pump() == 1
    assert driver.menu() is menu  # the same NSMenu, its items replaced
    assert read_back(menu)[2:4] == [
        ("web — stopped", ["Start", "Open console"]),
        ("db — running", ["Stop", "Suspend", "Open console"]),
    ]
    assert driver.cocoa.bar.items[0].button().tool_tip == "1 of 2 VMs running"
    driver.rows = [VMRow("web", "stopped"), VMRow("db", "stopped")]
    driver.tray.refresh()
    settle(driver.tray)
    driver.cocoa.pump()
    assert read_back(menu)[-1] == "Quit"
    assert driver.cocoa.bar.items[0].button().tool_tip == "No VM running"


def test_opening_the_menu_refreshes_it(driver: Driver) -> None:
    driver.tray.start()
    driver.rows = [VMRow("web", "paused")]
    driver.menu().delegate.menuWillOpen_(driver.menu())
    settle(driver.tray)
    driver.cocoa.pump()
    assert read_back(driver.menu())[2] == ("web — paused", ["Resume", "Open console"])


def test_a_failing_rows_keeps_the_last_menu(driver: Driver) -> None:
    driver.tray.start()

    def broken() -> list[VMRow]:
        raise RuntimeError("the library is gone")

    driver.tray._rows = broken
    driver.tray.refresh()
    settle(driver.tray)
    assert driver.cocoa.queued == []
    assert read_back(driver.menu())[2][0] == "web — running"


def test_started_off_the_main_thread_it_waits_for_the_main_loop() -> None:
    made = Driver(TWO)
    worker = threading.Thread(target=made.tray.start)
    worker.start()
    worker.join(10)
    assert made.cocoa.bar.items == [] and len(made.cocoa.queued) == 1
    made.cocoa.pump()
    assert len(made.cocoa.bar.items) == 1
    made.tray.stop()


def test_stop_takes_the_icon_away(driver: Driver) -> None:
    driver.tray.start()
    target = driver.menu().delegate
    driver.tray.stop()
    assert driver.cocoa.bar.items == [] and driver.tray.status_item is None
    assert target.tray is None  # a click AppKit still delivers finds no tray
    driver.tray.refresh()  # after stop: nothing
    assert driver.cocoa.queued == []


@pytest.mark.skipif(importlib.util.find_spec("AppKit") is not None, reason="PyObjC is here")
def test_without_pyobjc_start_says_what_to_install() -> None:
    tray = MenuBarTray(lambda: TWO, lambda: True, lambda action: None)
    with pytest.raises(HostToolMissing) as raised:
        tray.start()
    assert raised.value.hint == "pip install 'vmdesk[macos]'"
    assert "AppKit" in raised.value.message
    tray.stop()
