"""The desktop app's menu-bar icon on macOS: an ``NSStatusItem`` whose ``NSMenu`` is built
from :func:`vmdesk.desktop.tray_menu.build_menu`, through PyObjC (``vmdesk[macos]``). The same
interface as :class:`vmdesk.desktop.tray.Tray`, so the app picks one by platform.

Threads: AppKit is used on the main thread only. pywebview's Cocoa backend runs the
``NSApplication`` there, so ``start()`` and ``stop()`` work at once when they are called on
it (the app calls them there) and every later change is handed to it with
``AppHelper.callAfter``. ``rows()`` and ``window_visible()`` are called on one menu worker
thread (and once by ``start()``'s caller), never on the main thread: they may be slow.
A click is answered on the main thread by looking the item's tag (the ``MenuItem`` id) up
in the current menu; ``on_action`` then runs on a small pool of action threads, because VM
operations block.

Everything that needs AppKit is loaded by :meth:`Cocoa.load` or defined inside functions, so
this module imports anywhere; the pure parts (:func:`describe`, :func:`action_for`,
:func:`icon_pdf`) are tested on Linux. Nothing here has run on a Mac yet; the Mac test is
``tests_macos/test_tray_macos.py``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vmdesk.core.errors import HostToolMissing
from vmdesk.desktop import tray_menu
from vmdesk.desktop.tray_menu import MenuItem, VMRow
from vmdesk.desktop.tray_state import Changes, TrayState

TITLE = "VM-Desk"  # the status item's text when there is no icon
ACTION = "menuItemClicked:"  # the target's selector every clickable item sends
ICON_POINTS = 18.0  # menu-bar icons are 18 pt high (16 pt of drawing and a margin)
MISSING_HINT = "pip install 'vmdesk[macos]'"
log = logging.getLogger(__name__)


# -- the pure part: the menu as AppKit will be told it, a click's action, the icon ---------


@dataclass(frozen=True, slots=True)
class NativeItem:
    """One NSMenuItem as :func:`fill` makes it. ``clickable``: it has the target and ACTION."""

    title: str
    enabled: bool
    tag: int
    separator: bool = False
    clickable: bool = False
    children: tuple[NativeItem, ...] = ()


def describe(root: MenuItem) -> tuple[NativeItem, ...]:
    """The NSMenu's items for ``root``'s children, depth first: what :func:`fill` builds."""
    return tuple(_native(item) for item in root.children)


def _native(item: MenuItem) -> NativeItem:
    if item.separator:
        return NativeItem("", enabled=False, tag=item.id, separator=True)
    return NativeItem(
        item.label,
        enabled=item.enabled,
        tag=item.id,
        clickable=item.enabled and item.action is not None and not item.children,
        children=tuple(_native(child) for child in item.children),
    )


def action_for(root: MenuItem, tag: int) -> tuple[str, ...] | None:
    """What a click on the item tagged ``tag`` does, or None (no such item in this menu, a
    separator, a submenu, a disabled item). Tags are ids derived from meaning, so a click
    that raced a rebuild still lands on the same thing or on nothing."""
    if tag == tray_menu.ROOT_ID:
        return None
    item = tray_menu.find(root, tag)
    if item is None or item.separator or item.children or not item.enabled:
        return None
    return item.action


def _rounded_rect(x: float, y: float, w: float, h: float, r: float) -> str:
    """A PDF path of a rectangle with round corners (cubic Béziers, the usual 0.5523 k)."""
    k = r * (1 - 0.5523)  # the control points' distance from the corner
    right, bottom = x + w, y + h
    return " ".join(
        [
            f"{x + r:g} {y:g} m",
            f"{right - r:g} {y:g} l",
            f"{right - k:g} {y:g} {right:g} {y + k:g} {right:g} {y + r:g} c",
            f"{right:g} {bottom - r:g} l",
            f"{right:g} {bottom - k:g} {right - k:g} {bottom:g} {right - r:g} {bottom:g} c",
            f"{x + r:g} {bottom:g} l",
            f"{x + k:g} {bottom:g} {x:g} {bottom - k:g} {x:g} {bottom - r:g} c",
            f"{x:g} {y + r:g} l",
            f"{x:g} {y + k:g} {x + k:g} {y:g} {x + r:g} {y:g} c",
            "h",
        ]
    )


def icon_drawing() -> str:
    """packaging/debian/vmdesk.svg in one colour, as PDF drawing operators in its 64x64
    coordinates: the screen's frame (its outer rectangle less the inner one), the two marks
    on the screen, the stand. A template image is only its shape: AppKit colours it."""
    return "\n".join(
        [
            "1 0 0 -1 0 64 cm",  # the SVG's y runs down
            "0 g",
            _rounded_rect(4, 8, 56, 38, 4) + " " + _rounded_rect(9, 13, 46, 28, 2) + " f*",
            "18 21 m 28 21 l 23 33 l h 30 21 m 40 21 l 35 33 l h f",
            "24 48 16 4 re f",
            _rounded_rect(16, 52, 32, 4, 2) + " f",
        ]
    )


def icon_pdf() -> bytes:
    """A one-page PDF of :func:`icon_drawing` (64x64 points), which NSImage reads on every
    macOS: no SVG reader and no new dependency."""
    content = icon_drawing().encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 64 64] /Resources << >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


# -- AppKit: loaded on first use; every function here runs on the main thread ---------------


_TARGET_CLASSES: dict[Any, Any] = {}  # by base class: AppKit's NSObject, or a test's fake


def _target_class(objc: Any, foundation: Any) -> Any:
    """The menu's target and delegate (one Objective-C class per process, made on first use)."""
    base: Any = foundation.NSObject
    if base not in _TARGET_CLASSES:

        class VMDeskMenuBarTarget(base):  # type: ignore[misc]
            """Its ``tray`` is the MenuBarTray it answers for (a Python attribute)."""

            @objc.typedSelector(b"v@:@")  # type: ignore[untyped-decorator]
            def menuItemClicked_(self, sender: Any) -> None:
                tray = getattr(self, "tray", None)
                if tray is not None:
                    _guarded(lambda: tray._clicked(int(sender.tag())))

            @objc.typedSelector(b"v@:@")  # type: ignore[untyped-decorator]
            def menuWillOpen_(self, menu: Any) -> None:  # NSMenuDelegate
                tray = getattr(self, "tray", None)
                if tray is not None:
                    _guarded(tray.refresh)  # what changed since the last refresh, soon

        _TARGET_CLASSES[base] = VMDeskMenuBarTarget
    return _TARGET_CLASSES[base]


def _guarded(work: Callable[[], None]) -> None:
    """Run ``work`` from Objective-C: an exception escaping into AppKit would end the app."""
    try:
        work()
    except BaseException:
        log.exception("the menu-bar icon's %r failed", work)


class Cocoa:
    """PyObjC's AppKit, Foundation and ``PyObjCTools.AppHelper``; tests pass a fake."""

    def __init__(self, appkit: Any, foundation: Any, helper: Any, objc: Any) -> None:
        self.appkit = appkit
        self.foundation = foundation
        self._helper = helper
        self._objc = objc

    @classmethod
    def load(cls) -> Cocoa:
        """HostToolMissing when PyObjC's AppKit is not installed."""
        try:
            return cls(
                importlib.import_module("AppKit"),
                importlib.import_module("Foundation"),
                importlib.import_module("PyObjCTools.AppHelper"),
                importlib.import_module("objc"),
            )
        except ImportError:
            raise HostToolMissing(
                "the menu-bar icon needs PyObjC's AppKit (pyobjc-framework-Cocoa), "
                "which is not installed",
                hint=MISSING_HINT,
            ) from None

    def on_main(self, work: Callable[[], None]) -> None:
        """``work`` now when this is the main thread, else soon on it (its run loop's next
        turn, in the common modes: also while a menu is open). Never waits for it."""
        if self.foundation.NSThread.isMainThread():
            _guarded(work)
        else:
            self._helper.callAfter(_guarded, work)

    def target(self, tray: MenuBarTray) -> Any:
        target = _target_class(self._objc, self.foundation).alloc().init()
        target.tray = tray
        return target


def fill(appkit: Any, menu: Any, items: Sequence[NativeItem], target: Any) -> None:
    """Replace ``menu``'s items with ``items`` (the same NSMenu: an open menu stays open)."""
    menu.removeAllItems()
    for spec in items:
        menu.addItem_(_ns_item(appkit, spec, target))


def _ns_item(appkit: Any, spec: NativeItem, target: Any) -> Any:
    if spec.separator:
        item = appkit.NSMenuItem.separatorItem()
        item.setTag_(spec.tag)
        return item
    item = appkit.NSMenuItem.alloc().initWithTitle_action_keyEquivalent_(
        spec.title, ACTION if spec.clickable else None, ""
    )
    item.setTag_(spec.tag)
    item.setEnabled_(spec.enabled)
    if spec.clickable:
        item.setTarget_(target)  # weak in AppKit: the tray holds the target
    if spec.children:
        submenu = appkit.NSMenu.alloc().initWithTitle_(spec.title)
        submenu.setAutoenablesItems_(False)
        fill(appkit, submenu, spec.children, target)
        item.setSubmenu_(submenu)
    return item


def template_image(cocoa: Cocoa) -> Any | None:
    """The icon as an 18 pt template image (AppKit tints it for a light or dark menu bar),
    or None when AppKit would not read it: then the item shows TITLE."""
    try:
        data = icon_pdf()
        image = cocoa.appkit.NSImage.alloc().initWithData_(
            cocoa.foundation.NSData.dataWithBytes_length_(data, len(data))
        )
        if image is None or not image.isValid():
            return None
        image.setSize_((ICON_POINTS, ICON_POINTS))
        image.setTemplate_(True)
        return image
    except Exception:
        log.warning("the menu-bar icon's image could not be made; it shows its title")
        return None


# -- the tray ------------------------------------------------------------------------------


class MenuBarTray(TrayState):
    """The menu-bar icon: ``start()``, ``refresh()`` (any thread), ``stop()``, as Tray."""

    def __init__(
        self,
        rows: Callable[[], list[VMRow]],
        window_visible: Callable[[], bool],
        on_action: Callable[[tuple[str, ...]], None],
        *,
        cocoa: Cocoa | None = None,
    ) -> None:
        super().__init__(rows, window_visible, on_action, what="the menu-bar icon",
                         threads="vmdesk-menubar")  # fmt: skip
        self._cocoa = cocoa  # None until start() loads PyObjC
        # The main thread's: what AppKit is showing.
        self._item: Any = None
        self._menu: Any = None
        self._target: Any = None
        self._shown_root: MenuItem | None = None
        self._shown_tooltip: str | None = None

    # -- the caller's side: any thread -------------------------------------------------------

    def start(self) -> None:
        """Build the menu and put the icon in the menu bar: at once on the main thread, else
        on its next turn. HostToolMissing (hint: ``pip install 'vmdesk[macos]'``) without
        PyObjC's AppKit."""
        if self._cocoa is None:
            self._cocoa = Cocoa.load()
        self._rebuild()
        self._cocoa.on_main(self._install)

    def stop(self) -> None:
        """Take the icon out of the menu bar and end the tray's threads."""
        with self._lock:
            self._stopped = True
        if self._cocoa is not None:
            self._cocoa.on_main(self._remove)
        self._end_workers()

    @property
    def status_item(self) -> Any:
        """The NSStatusItem, while the icon is in the menu bar (read it on the main thread)."""
        return self._item

    # -- the menu worker ----------------------------------------------------------------------

    def _shown(self) -> bool:
        return self._cocoa is not None

    def _changed(self, changes: Changes) -> None:
        menu_changed, tip_changed, _ = changes
        if (menu_changed or tip_changed) and self._cocoa is not None:
            self._cocoa.on_main(self._show)

    # -- the main thread -----------------------------------------------------------------------

    def _install(self) -> None:
        cocoa = self._cocoa
        if cocoa is None or self._item is not None or self._is_stopped():
            return
        appkit = cocoa.appkit
        appkit.NSApplication.sharedApplication()  # the connection to the window server
        item = appkit.NSStatusBar.systemStatusBar().statusItemWithLength_(
            appkit.NSVariableStatusItemLength
        )
        button = item.button()
        image = template_image(cocoa)
        if image is not None:
            button.setImage_(image)
            button.setAccessibilityTitle_(TITLE)  # VoiceOver says what the picture is
        else:
            button.setTitle_(TITLE)
        menu = appkit.NSMenu.alloc().initWithTitle_(TITLE)
        menu.setAutoenablesItems_(False)  # each item is enabled as the model says
        self._target = cocoa.target(self)
        menu.setDelegate_(self._target)  # menuWillOpen_: a refresh each time it opens
        item.setMenu_(menu)
        self._item, self._menu = item, menu
        self._shown_root = self._shown_tooltip = None
        self._show()

    def _show(self) -> None:
        """Bring AppKit's menu and tooltip up to the model (only what changed)."""
        with self._lock:
            root, tip, stopped = self._root, self._tooltip, self._stopped
        if stopped or self._item is None or self._cocoa is None:
            return
        if root is not self._shown_root:
            fill(self._cocoa.appkit, self._menu, describe(root), self._target)
            self._shown_root = root
        if tip != self._shown_tooltip:
            self._item.button().setToolTip_(tip)
            self._shown_tooltip = tip

    def _remove(self) -> None:
        if self._item is not None and self._cocoa is not None:
            self._cocoa.appkit.NSStatusBar.systemStatusBar().removeStatusItem_(self._item)
        if self._target is not None:
            self._target.tray = None
        self._item = self._menu = None

    def _clicked(self, tag: int) -> None:
        """The target's click (main thread): the action runs on an action thread."""
        with self._lock:
            action = action_for(self._root, tag)
        if action is not None:
            self._act(action)

    def _is_stopped(self) -> bool:
        with self._lock:
            return self._stopped
