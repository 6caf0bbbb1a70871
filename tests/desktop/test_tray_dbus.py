"""The tray icon on a private session bus (a real dbus-daemon), seen from another connection
as a panel sees it: its name and properties, the menu's layout following the VMs, clicks
reaching the app off the bus loop, and registration with a StatusNotifierWatcher that was
there first or came later. The VM rows are a list the test changes; no VM runs here."""

# No `from __future__ import annotations`: the watcher below is a dbus-fast service, which
# reads its D-Bus signatures from the annotations (a postponed "None" is not one).

import asyncio
import os
import queue
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from dbus_fast import Message, MessageType, NameFlag, RequestNameReply, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusDict, DBusInt32, DBusStr, DBusUInt32
from dbus_fast.service import ServiceInterface, dbus_method

from tests.desktop import menu_client
from vmdesk.core.errors import HostToolMissing
from vmdesk.desktop.tray import NO_BUS_HINT, DBusStrList, Tray
from vmdesk.desktop.tray_menu import VMRow

pytestmark = pytest.mark.timeout(30)

ITEM = "org.kde.StatusNotifierItem"
MENU = "com.canonical.dbusmenu"
WATCHER = "org.kde.StatusNotifierWatcher"
WAIT = 5.0  # seconds for anything the tray does in answer to us


class App:
    """What the desktop app hands the tray: the VM rows, and what its actions did."""

    def __init__(self) -> None:
        self.rows = [VMRow("web", "running"), VMRow("db", "stopped")]
        self.actions: queue.Queue[tuple[tuple[str, ...], str]] = queue.Queue()
        self.gate: threading.Event | None = None  # when set, actions wait for it

    def on_action(self, action: tuple[str, ...]) -> None:
        self.actions.put((action, threading.current_thread().name))
        if self.gate is not None:
            assert self.gate.wait(WAIT), "the test never let the action finish"

    def tray(self, address: str) -> Tray:
        return Tray(lambda: list(self.rows), lambda: True, self.on_action, bus_address=address)

    async def action(self) -> tuple[tuple[str, ...], str]:
        return await asyncio.to_thread(self.actions.get, timeout=WAIT)


class Panel:
    """A client connection: calls, and the tray's signals as they arrive."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.layout_updates: asyncio.Queue[list[Any]] = asyncio.Queue()
        bus.add_message_handler(self._on_message)

    def _on_message(self, msg: Message) -> None:
        if msg.message_type == MessageType.SIGNAL and msg.member == "LayoutUpdated":
            self.layout_updates.put_nowait(list(msg.body))

    async def call(
        self,
        dest: str,
        path: str,
        iface: str,
        member: str,
        sig: str = "",
        body: list[Any] | None = None,
    ) -> list[Any]:
        reply = await self.bus.call(
            Message(
                destination=dest,
                path=path,
                interface=iface,
                member=member,
                signature=sig,
                body=body or [],
            )
        )
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            raise LookupError(reply.error_name, *reply.body)
        return list(reply.body)

    async def bus_call(self, member: str, sig: str = "", body: list[Any] | None = None) -> Any:
        got = await self.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            member,
            sig,
            body,
        )
        return got[0] if got else None

    async def menu(self, name: str, member: str, sig: str = "", *args: Any) -> list[Any]:
        return await self.call(name, "/MenuBar", MENU, member, sig, list(args))

    async def layout(self, name: str) -> tuple[int, dict[str, Any]]:
        """(revision, {label: (id, {child label: (id, ...)})})."""
        revision, root = await self.menu(name, "GetLayout", "iias", 0, -1, [])
        return revision, menu_client.labels(root)

    async def click(self, name: str, item_id: int) -> None:
        await self.menu(name, "Event", "isvu", item_id, "clicked", Variant("s", ""), 0)


@asynccontextmanager
async def panel(address: str) -> AsyncIterator[Panel]:
    bus = await MessageBus(bus_address=address).connect()
    seen = Panel(bus)
    await seen.bus_call("AddMatch", "s", [f"type='signal',interface='{MENU}'"])
    try:
        yield seen
    finally:
        bus.disconnect()


class Watcher(ServiceInterface):
    """The smallest org.kde.StatusNotifierWatcher: it records who registers."""

    def __init__(self) -> None:
        super().__init__(WATCHER)
        self.items: asyncio.Queue[str] = asyncio.Queue()

    @dbus_method()
    def RegisterStatusNotifierItem(self, service: DBusStr) -> None:
        self.items.put_nowait(service)


async def watcher_on(address: str) -> tuple[MessageBus, Watcher]:
    bus = await MessageBus(bus_address=address).connect()
    watcher = Watcher()
    bus.export("/StatusNotifierWatcher", watcher)
    assert await bus.request_name(WATCHER, NameFlag.DO_NOT_QUEUE) == RequestNameReply.PRIMARY_OWNER
    return bus, watcher


class NotificationServer(ServiceInterface):
    """The smallest org.freedesktop.Notifications: it records what it is asked to show."""

    def __init__(self) -> None:
        super().__init__("org.freedesktop.Notifications")
        self.shown: asyncio.Queue[list[Any]] = asyncio.Queue()

    @dbus_method()
    def Notify(
        self,
        app_name: DBusStr,
        replaces_id: DBusUInt32,
        app_icon: DBusStr,
        summary: DBusStr,
        body: DBusStr,
        actions: DBusStrList,
        hints: DBusDict,
        expire_timeout: DBusInt32,
    ) -> DBusUInt32:
        self.shown.put_nowait([app_name, replaces_id, app_icon, summary, body, expire_timeout])
        return 1


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
def tray(session_bus: str, app: App) -> Iterator[Tray]:
    started = app.tray(session_bus)
    started.start()
    yield started
    started.stop()


def test_the_icon_is_on_the_bus_with_its_properties(session_bus: str, tray: Tray, app: App) -> None:
    async def look() -> None:
        async with panel(session_bus) as seen:
            names = await seen.bus_call("ListNames")
            ours = [n for n in names if n.startswith(f"{ITEM}-")]
            assert ours == [tray.name]
            assert re.fullmatch(rf"{ITEM}-{os.getpid()}-\d+", ours[0])
            props = (
                await seen.call(
                    ours[0],
                    "/StatusNotifierItem",
                    "org.freedesktop.DBus.Properties",
                    "GetAll",
                    "s",
                    [ITEM],
                )
            )[0]
            assert props["Title"] == Variant("s", "VM-Desk")
            assert props["Menu"] == Variant("o", "/MenuBar")
            assert props["ItemIsMenu"] == Variant("b", True)
            assert {k: props[k].value for k in ("Id", "Category", "Status", "IconName")} == {
                "Id": "vmdesk",
                "Category": "ApplicationStatus",
                "Status": "Active",
                "IconName": "vmdesk",
            }
            assert tuple(props["ToolTip"].value[2:]) == ("VM-Desk", "1 of 2 VMs running")
            version = await seen.call(
                ours[0],
                "/MenuBar",
                "org.freedesktop.DBus.Properties",
                "Get",
                "ss",
                [MENU, "Version"],
            )
            assert version == [Variant("u", 3)]
            # A left click on the icon opens the window.
            await seen.call(ours[0], "/StatusNotifierItem", ITEM, "Activate", "ii", [10, 10])
            assert (await app.action())[0] == ("show",)

    asyncio.run(look())


def test_the_menu_lists_the_vms_and_their_states(session_bus: str, tray: Tray) -> None:
    async def look() -> None:
        assert tray.name is not None
        async with panel(session_bus) as seen:
            _, menu = await seen.layout(tray.name)
            assert list(menu) == [
                "Open VM-Desk",
                "---",
                "web — running",
                "db — stopped",
                "---#4",
                "Quit",
            ]
            assert list(menu["web — running"][1]) == ["Stop", "Suspend", "Open console"]
            assert list(menu["db — stopped"][1]) == ["Start", "Open console"]
            assert list(menu["Quit"][1]) == [
                "Leave 1 VM running and quit",
                "Suspend all and quit",
                "Stop all and quit",
            ]
            start_id = menu["db — stopped"][1]["Start"][0]
            label = await seen.menu(tray.name, "GetProperty", "is", start_id, "label")
            assert label == [Variant("s", "Start")]
            group = await seen.menu(tray.name, "GetGroupProperties", "aias", [start_id], ["label"])
            assert [tuple(entry) for entry in group[0]] == [
                (start_id, {"label": Variant("s", "Start")})
            ]
            with pytest.raises(LookupError, match="InvalidId"):
                await seen.menu(tray.name, "GetLayout", "iias", 987654, -1, [])

    asyncio.run(look())


def test_refresh_and_about_to_show_follow_the_vms(session_bus: str, tray: Tray, app: App) -> None:
    async def look() -> None:
        assert tray.name is not None
        async with panel(session_bus) as seen:
            before, _ = await seen.layout(tray.name)
            app.rows[1] = VMRow("db", "running")
            tray.refresh()
            revision, parent = await asyncio.wait_for(seen.layout_updates.get(), WAIT)
            assert revision > before and parent == 0
            now, menu = await seen.layout(tray.name)
            assert now == revision and "db — running" in menu and "db — stopped" not in menu
            assert next(iter(menu["Quit"][1])) == "Leave 2 VMs running and quit"
            # Nothing changed: no announcement.
            tray.refresh()
            await asyncio.sleep(0.3)
            assert seen.layout_updates.empty()
            # A panel about to open the menu gets it fresh, without the app's refresh().
            app.rows.append(VMRow("new", "stopped"))
            assert await seen.menu(tray.name, "AboutToShow", "i", 0) == [True]
            revision, _ = await asyncio.wait_for(seen.layout_updates.get(), WAIT)
            assert revision == now + 1 and "new — stopped" in (await seen.layout(tray.name))[1]
            assert await seen.menu(tray.name, "AboutToShow", "i", 0) == [False]

    asyncio.run(look())


def test_a_click_reaches_the_app_off_the_bus_loop(session_bus: str, tray: Tray, app: App) -> None:
    async def look() -> None:
        assert tray.name is not None
        async with panel(session_bus) as seen:
            _, menu = await seen.layout(tray.name)
            app.gate = threading.Event()  # the action takes as long as the test says
            await seen.click(tray.name, menu["db — stopped"][1]["Start"][0])
            action, thread = await app.action()
            assert action == ("start", "db") and thread.startswith("vmdesk-tray-do")
            # The action is still running: the menu answers all the same.
            assert "web — running" in (await seen.layout(tray.name))[1]
            app.gate.set()
            await seen.click(tray.name, menu["Quit"][1]["Stop all and quit"][0])
            assert (await app.action())[0] == ("quit", "stop")
            # A submenu does nothing when clicked; an unknown id is an error.
            await seen.click(tray.name, menu["web — running"][0])
            with pytest.raises(LookupError, match="InvalidId"):
                await seen.click(tray.name, 987654)
            events = [
                [menu["Open VM-Desk"][0], "clicked", Variant("s", ""), 0],
                [987654, "clicked", Variant("s", ""), 0],
            ]
            assert await seen.menu(tray.name, "EventGroup", "a(isvu)", events) == [[987654]]
            assert (await app.action())[0] == ("show",)
            assert app.actions.empty()  # the submenu's click called nothing

    asyncio.run(look())


def test_it_registers_with_a_watcher_that_was_there_first(session_bus: str, app: App) -> None:
    async def look() -> None:
        bus, watcher = await watcher_on(session_bus)
        tray = app.tray(session_bus)
        try:
            await asyncio.to_thread(tray.start)  # the watcher answers on this loop meanwhile
            assert await asyncio.wait_for(watcher.items.get(), WAIT) == tray.name
        finally:
            await asyncio.to_thread(tray.stop)
            bus.disconnect()

    asyncio.run(look())


def test_it_registers_with_a_watcher_that_comes_later(session_bus: str, tray: Tray) -> None:
    async def look() -> None:
        assert tray.name is not None
        async with panel(session_bus) as seen:
            assert await seen.bus_call("NameHasOwner", "s", [WATCHER]) is False
            assert "db — stopped" in (await seen.layout(tray.name))[1]  # serving without one
        bus, watcher = await watcher_on(session_bus)
        assert await asyncio.wait_for(watcher.items.get(), WAIT) == tray.name
        bus.disconnect()  # the panel restarts: its new watcher hears from the tray too
        bus, watcher = await watcher_on(session_bus)
        assert await asyncio.wait_for(watcher.items.get(), WAIT) == tray.name
        bus.disconnect()

    asyncio.run(look())


def test_stop_takes_the_icon_off_the_bus(session_bus: str, app: App) -> None:
    tray = app.tray(session_bus)
    tray.start()
    name = tray.name
    tray.stop()

    async def look() -> None:
        async with panel(session_bus) as seen:
            for _ in range(50):
                if not await seen.bus_call("NameHasOwner", "s", [name]):
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"{name} is still on the bus after stop()")

    asyncio.run(look())
    tray.refresh()  # after stop(): a no-op, not an error


def test_no_session_bus_is_an_error_with_a_hint(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, app: App
) -> None:
    with pytest.raises(HostToolMissing) as raised:
        app.tray(f"unix:path={tmp_path}/no-bus-here").start()
    assert raised.value.hint == NO_BUS_HINT and "no-bus-here" in str(raised.value)
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # and no systemd user bus in it
    with pytest.raises(HostToolMissing, match="DBUS_SESSION_BUS_ADDRESS") as raised:
        Tray(lambda: [], lambda: True, app.on_action).start()
    assert raised.value.hint == NO_BUS_HINT


def test_a_notification_goes_to_the_desktops_server_as_plain_text(
    session_bus: str, tray: Tray
) -> None:
    tray.notify("nobody listens", "yet")  # no server on the bus: logged, nothing raised

    async def look() -> None:
        bus = await MessageBus(bus_address=session_bus).connect()
        server = NotificationServer()
        bus.export("/org/freedesktop/Notifications", server)
        name = "org.freedesktop.Notifications"
        assert await bus.request_name(name, NameFlag.DO_NOT_QUEUE) == RequestNameReply.PRIMARY_OWNER
        try:
            tray.notify("VM-Desk could not start <web>", "a & b < c (try `x`)")
            shown = await asyncio.wait_for(server.shown.get(), WAIT)
        finally:
            bus.disconnect()
        # The body may be read as markup: what the message says must come through as text.
        assert shown == ["VM-Desk", 0, "vmdesk", "VM-Desk could not start <web>",
                         "a &amp; b &lt; c (try `x`)", -1]  # fmt: skip

    asyncio.run(look())
