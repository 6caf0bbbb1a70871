"""The desktop app's tray icon on Linux: a StatusNotifierItem with a com.canonical.dbusmenu
menu, served on the session bus by dbus-fast from an asyncio loop in a thread of its own, so
it needs nothing from the window's GUI toolkit.

Threads: the bus loop only answers the bus. ``rows()`` and ``window_visible()`` are called on
one menu worker thread (and once by ``start()``'s caller); ``on_action`` is called on a small
pool of action threads, so a slow action (stopping every VM) never stalls the menu.
"""

# No `from __future__ import annotations` here: dbus-fast reads the D-Bus signatures from the
# annotations, and it cannot turn a postponed "None" return into an empty signature.

import asyncio
import concurrent.futures
import contextlib
import html
import itertools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

from dbus_fast import (
    DBusError,
    ErrorType,
    Message,
    MessageType,
    NameFlag,
    PropertyAccess,
    RequestNameReply,
    Variant,
)
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import (
    DBusBool,
    DBusInt32,
    DBusObjectPath,
    DBusSignature,
    DBusStr,
    DBusUInt32,
    DBusVariant,
)
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property, dbus_signal

from vmdesk.core.errors import HostToolMissing
from vmdesk.desktop import tray_menu
from vmdesk.desktop.tray_menu import Layout, VMRow
from vmdesk.desktop.tray_state import Changes, TrayState

ITEM_PATH = "/StatusNotifierItem"
MENU_PATH = "/MenuBar"
WATCHER = "org.kde.StatusNotifierWatcher"
WATCHER_PATH = "/StatusNotifierWatcher"
ICON_NAME = "vmdesk"  # the icon theme's name, and the item's id
TITLE = "VM-Desk"
NOTIFICATIONS = "org.freedesktop.Notifications"  # the desktop's notification server
NOTIFICATIONS_PATH = "/org/freedesktop/Notifications"
CONNECT_TIMEOUT = 10.0  # seconds start() waits for the bus, the name and the watcher
NO_BUS_HINT = "the tray needs a desktop session's D-Bus; the app window works without it"
_READ = PropertyAccess.READ
_INVALID_ID = "com.canonical.dbusmenu.Error.InvalidId"
# The spec's names are org.kde.StatusNotifierItem-PID-ID, ID unique within the process.
_instances = itertools.count(1)
log = logging.getLogger(__name__)

DBusIntList = Annotated[list[int], DBusSignature("ai")]
DBusStrList = Annotated[list[str], DBusSignature("as")]
DBusLayoutReply = Annotated[tuple[int, Layout], DBusSignature("u(ia{sv}av)")]
DBusGroupProps = Annotated[list[tuple[int, dict[str, Variant]]], DBusSignature("a(ia{sv})")]
DBusEvents = Annotated[list[Sequence[Any]], DBusSignature("a(isvu)")]
DBusShowGroupReply = Annotated[tuple[list[int], list[int]], DBusSignature("aiai")]
DBusToolTip = Annotated[tuple[str, list[Any], str, str], DBusSignature("(sa(iiay)ss)")]
DBusRevision = Annotated[tuple[int, int], DBusSignature("ui")]
DBusPropsUpdate = Annotated[
    tuple[list[tuple[int, dict[str, Variant]]], list[tuple[int, list[str]]]],
    DBusSignature("a(ia{sv})a(ias)"),
]


def session_bus_address() -> str:
    """DBUS_SESSION_BUS_ADDRESS, else systemd's per-user bus when its socket is there (a
    shell that was not started by the desktop session often lacks the variable)."""
    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if address:
        return address
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and (Path(runtime) / "bus").is_socket():
        return f"unix:path={Path(runtime) / 'bus'}"
    raise HostToolMissing(
        "no D-Bus session bus for the tray icon (DBUS_SESSION_BUS_ADDRESS is not set)",
        hint=NO_BUS_HINT,
    )


class Tray(TrayState):
    def __init__(
        self,
        rows: Callable[[], list[VMRow]],
        window_visible: Callable[[], bool],
        on_action: Callable[[tuple[str, ...]], None],
        bus_address: str | None = None,
        icon_theme_path: str = "",
    ) -> None:
        super().__init__(rows, window_visible, on_action, what="the tray icon",
                         threads="vmdesk-tray")  # fmt: skip
        self._bus_address = bus_address
        self.icon_theme_path = icon_theme_path  # a folder with hicolor/…/vmdesk.svg, or ""
        self.name: str | None = None  # the well-known name, once started
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bus: MessageBus | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._item = _StatusNotifierItem(self)
        self._menu = _DBusMenu(self)

    # -- the caller's side: any thread -------------------------------------------------------

    def start(self) -> None:
        """Connect, export the icon and its menu, take the name and register with the
        watcher when there is one. HostToolMissing when no session bus answers."""
        address = self._bus_address or session_bus_address()
        self._rebuild()
        ready: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(address, ready)),
            name="vmdesk-tray-bus",
            daemon=True,
        )
        self._thread.start()
        try:
            self.name = ready.result(CONNECT_TIMEOUT)
        except concurrent.futures.TimeoutError:
            # Its thread, stuck in connect(), is a daemon: it dies with the process.
            self._end_workers()
            raise HostToolMissing(
                f"the D-Bus session bus at {address} did not answer in {CONNECT_TIMEOUT:.0f} s",
                hint=NO_BUS_HINT,
            ) from None
        except HostToolMissing:
            self._end_workers()
            raise

    def stop(self) -> None:
        """Disconnect from the bus (the icon goes away) and end the tray's threads."""
        with self._lock:
            self._stopped = True
        loop, bus, thread = self._loop, self._bus, self._thread
        if loop is not None and bus is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(bus.disconnect)
        if thread is not None and thread is not threading.current_thread():
            thread.join(CONNECT_TIMEOUT)
        self._end_workers()

    def notify(self, summary: str, body: str) -> None:
        """A desktop notification on the tray's bus; logged where no server shows it."""
        loop = self._loop
        if loop is None or self._stopped:
            return
        with contextlib.suppress(RuntimeError):  # the loop has already ended
            asyncio.run_coroutine_threadsafe(self._notify(summary, body), loop)

    # -- the menu worker -----------------------------------------------------------------------

    def _changed(self, changes: Changes) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # stopped meanwhile
                self._loop.call_soon_threadsafe(self._announce, *changes)

    # -- the bus loop --------------------------------------------------------------------------

    async def _serve(self, address: str, ready: concurrent.futures.Future[str]) -> None:
        try:
            bus = await MessageBus(bus_address=address).connect()
        except Exception as exc:
            ready.set_exception(
                HostToolMissing(f"no D-Bus session bus at {address}: {exc}", hint=NO_BUS_HINT)
            )
            return
        self._loop, self._bus = asyncio.get_running_loop(), bus
        try:
            bus.export(ITEM_PATH, self._item)
            bus.export(MENU_PATH, self._menu)
            name = await _own_name(bus)
            self.name = name
            await self._follow_watcher(bus)
        except Exception as exc:
            bus.disconnect()
            ready.set_exception(
                HostToolMissing(f"the session bus refused the tray: {exc}", hint=NO_BUS_HINT)
            )
            return
        ready.set_result(name)
        try:
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
        except Exception:
            log.warning("the tray lost its D-Bus connection", exc_info=True)

    async def _follow_watcher(self, bus: MessageBus) -> None:
        """Register with the watcher now if there is one, and with every one that appears
        later (a panel started after the app, or restarted)."""
        rule = (
            "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
            f"member='NameOwnerChanged',arg0='{WATCHER}'"
        )
        bus.add_message_handler(self._on_message)
        await _bus_call(bus, "AddMatch", [rule])  # first: a watcher starting now is seen
        reply = await _bus_call(bus, "NameHasOwner", [WATCHER])
        if reply.body[0]:
            await self._register(bus)

    def _on_message(self, msg: Message) -> None:
        if (
            msg.message_type == MessageType.SIGNAL
            and msg.member == "NameOwnerChanged"
            and msg.sender == "org.freedesktop.DBus"
            and msg.body[0] == WATCHER
            and msg.body[2]
            and self._bus is not None
        ):
            task = asyncio.get_running_loop().create_task(self._register(self._bus))
            self._tasks.add(task)  # a strong reference, until it ends
            task.add_done_callback(self._tasks.discard)

    async def _register(self, bus: MessageBus) -> None:
        await _ask(bus, WATCHER, WATCHER_PATH, "RegisterStatusNotifierItem", "s", [self.name],
                   refused="the tray watcher refused the icon")  # fmt: skip

    async def _notify(self, summary: str, body: str) -> None:
        if self._bus is None:
            return
        # app name, replaces no earlier one, icon, summary, body (servers may read it as
        # markup: a "<" in a message must not break it), no actions or hints, and the
        # server's own timeout
        args = [TITLE, 0, ICON_NAME, summary, html.escape(body, quote=False), [], {}, -1]
        await _ask(self._bus, NOTIFICATIONS, NOTIFICATIONS_PATH, "Notify", "susssasa{sv}i", args,
                   refused=f"no desktop notification for {summary!r}")  # fmt: skip

    def _announce(self, menu_changed: bool, tip_changed: bool, revision: int) -> None:
        if menu_changed:
            self._menu.LayoutUpdated(revision, tray_menu.ROOT_ID)
        if tip_changed:
            self._item.NewToolTip()

    async def _rebuild_here(self) -> bool:
        """Rebuild on the menu worker and announce it; True when the menu changed."""
        changes = await asyncio.get_running_loop().run_in_executor(self._menu_worker, self._rebuild)
        self._announce(*changes)
        return changes[0]

    def _event(self, item_id: int, event: str) -> bool:
        """Handle one dbusmenu event; False when ``item_id`` names no item."""
        with self._lock:
            item = tray_menu.find(self._root, item_id)
        if item is None:
            return False
        if event == "clicked" and item.enabled and item.action is not None:
            self._act(item.action)
        return True


async def _own_name(bus: MessageBus) -> str:
    for _ in range(100):  # another Tray of this process may hold an id
        name = f"org.kde.StatusNotifierItem-{os.getpid()}-{next(_instances)}"
        if await bus.request_name(name, NameFlag.DO_NOT_QUEUE) == RequestNameReply.PRIMARY_OWNER:
            return name
    raise RuntimeError("no free org.kde.StatusNotifierItem name for this process")


async def _ask(
    bus: MessageBus,
    service: str,
    path: str,
    member: str,
    signature: str,
    body: list[Any],
    *,
    refused: str,
) -> None:
    """Call ``member`` of ``service``'s own interface. An error reply is logged, not raised:
    a panel's watcher or a notification server that says no must not take the tray down."""
    call = Message(destination=service, path=path, interface=service, member=member,
                   signature=signature, body=body)  # fmt: skip
    reply = await bus.call(call)
    if reply.message_type == MessageType.ERROR:
        log.warning("%s: %s %s", refused, reply.error_name, reply.body)


async def _bus_call(bus: MessageBus, member: str, body: list[Any]) -> Message:
    call = Message(
        destination="org.freedesktop.DBus",
        path="/org/freedesktop/DBus",
        interface="org.freedesktop.DBus",
        member=member,
        signature="s",
        body=body,
    )
    reply = await bus.call(call)
    if reply.message_type == MessageType.ERROR:
        raise RuntimeError(f"{member}: {reply.error_name} {reply.body}")
    return reply


def _no_item(item_id: int) -> DBusError:
    return DBusError(_INVALID_ID, f"no menu item {item_id}")


class _StatusNotifierItem(ServiceInterface):
    """org.kde.StatusNotifierItem: the icon itself. Its menu is at MENU_PATH."""

    def __init__(self, tray: Tray) -> None:
        super().__init__("org.kde.StatusNotifierItem")
        self._tray = tray

    @dbus_property(_READ)
    def Category(self) -> DBusStr:
        return "ApplicationStatus"

    @dbus_property(_READ)
    def Id(self) -> DBusStr:
        return ICON_NAME

    @dbus_property(_READ)
    def Title(self) -> DBusStr:
        return TITLE

    @dbus_property(_READ)
    def Status(self) -> DBusStr:
        return "Active"

    @dbus_property(_READ)
    def IconName(self) -> DBusStr:
        return ICON_NAME

    @dbus_property(_READ)
    def IconThemePath(self) -> DBusStr:
        return self._tray.icon_theme_path

    @dbus_property(_READ)
    def Menu(self) -> DBusObjectPath:
        return MENU_PATH

    @dbus_property(_READ)
    def ItemIsMenu(self) -> DBusBool:
        return True

    @dbus_property(_READ)
    def ToolTip(self) -> DBusToolTip:
        return (ICON_NAME, [], TITLE, self._tray.tooltip)

    @dbus_method()
    def Activate(self, x: DBusInt32, y: DBusInt32) -> None:
        self._tray._act(("show",))

    @dbus_method()
    def SecondaryActivate(self, x: DBusInt32, y: DBusInt32) -> None:
        pass  # a middle click: nothing of ours is that minor

    @dbus_method()
    def ContextMenu(self, x: DBusInt32, y: DBusInt32) -> None:
        pass  # the host shows Menu itself; there is no menu of our own to pop up

    @dbus_method()
    def Scroll(self, delta: DBusInt32, orientation: DBusStr) -> None:
        pass

    @dbus_signal()
    def NewTitle(self) -> None:
        pass

    @dbus_signal()
    def NewIcon(self) -> None:
        pass

    @dbus_signal()
    def NewStatus(self) -> DBusStr:
        return "Active"

    @dbus_signal()
    def NewToolTip(self) -> None:
        pass


class _DBusMenu(ServiceInterface):
    """com.canonical.dbusmenu (version 3), answered from the tray's current tree."""

    def __init__(self, tray: Tray) -> None:
        super().__init__("com.canonical.dbusmenu")
        self._tray = tray

    @dbus_property(_READ)
    def Version(self) -> DBusUInt32:
        return 3

    @dbus_property(_READ)
    def TextDirection(self) -> DBusStr:
        return "ltr"

    @dbus_property(_READ)
    def Status(self) -> DBusStr:
        return "normal"

    @dbus_property(_READ)
    def IconThemePath(self) -> DBusStrList:
        path = self._tray.icon_theme_path
        return [path] if path else []

    @dbus_method()
    def GetLayout(
        self, parentId: DBusInt32, recursionDepth: DBusInt32, propertyNames: DBusStrList
    ) -> DBusLayoutReply:
        revision, root = self._tray.menu()
        try:
            return tray_menu.get_layout(root, revision, parentId, recursionDepth, propertyNames)
        except KeyError:
            raise _no_item(parentId) from None

    @dbus_method()
    def GetGroupProperties(self, ids: DBusIntList, propertyNames: DBusStrList) -> DBusGroupProps:
        return tray_menu.group_properties(self._tray.menu()[1], set(ids), propertyNames)

    @dbus_method()
    def GetProperty(self, id: DBusInt32, name: DBusStr) -> DBusVariant:
        item = tray_menu.find(self._tray.menu()[1], id)
        props = tray_menu.properties(item) if item is not None else {}
        if name not in props:
            raise DBusError(ErrorType.INVALID_ARGS, f"menu item {id} has no property {name!r}")
        return props[name]

    @dbus_method()
    def Event(
        self, id: DBusInt32, eventId: DBusStr, data: DBusVariant, timestamp: DBusUInt32
    ) -> None:
        if not self._tray._event(id, eventId):
            raise _no_item(id)

    @dbus_method()
    def EventGroup(self, events: DBusEvents) -> DBusIntList:
        errors = [item_id for item_id, event, *_ in events if not self._tray._event(item_id, event)]
        if events and len(errors) == len(events):  # the spec: an error when none was found
            raise _no_item(errors[0])
        return errors

    @dbus_method()
    async def AboutToShow(self, id: DBusInt32) -> DBusBool:
        changed = await self._tray._rebuild_here()
        if tray_menu.find(self._tray.menu()[1], id) is None:
            raise _no_item(id)
        return changed

    @dbus_method()
    async def AboutToShowGroup(self, ids: DBusIntList) -> DBusShowGroupReply:
        changed = await self._tray._rebuild_here()
        root = self._tray.menu()[1]
        known = [i for i in ids if tray_menu.find(root, i) is not None]
        return (known if changed else [], [i for i in ids if i not in known])

    @dbus_signal()
    def LayoutUpdated(self, revision: int, parent: int) -> DBusRevision:
        return (revision, parent)

    @dbus_signal()
    def ItemsPropertiesUpdated(
        self,
        updated: list[tuple[int, dict[str, Variant]]],
        removed: list[tuple[int, list[str]]],
    ) -> DBusPropsUpdate:
        return (updated, removed)
