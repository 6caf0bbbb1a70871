"""The tray as a desktop's panel sees it: over D-Bus, from another connection."""

from __future__ import annotations

import asyncio
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

MENU = "com.canonical.dbusmenu"


async def _call(address: str, message: Message) -> list[Any]:
    bus = await MessageBus(bus_address=address).connect()
    try:
        reply = await bus.call(message)
    finally:
        bus.disconnect()
    assert reply is not None
    if reply.message_type == MessageType.ERROR:
        raise AssertionError(f"{reply.error_name}: {reply.body}")
    return list(reply.body)


def call(address: str, **fields: Any) -> list[Any]:
    return asyncio.run(_call(address, Message(**fields)))


def item_names(address: str) -> list[str]:
    names = call(address, destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                 interface="org.freedesktop.DBus", member="ListNames")[0]  # fmt: skip
    return [n for n in names if n.startswith("org.kde.StatusNotifierItem-")]


def layout(address: str, name: str) -> dict[str, Any]:
    """{label: (id, {child label: (id, ...)})}, the menu as a tree of labels."""
    body = call(address, destination=name, path="/MenuBar", interface=MENU, member="GetLayout",
                signature="iias", body=[0, -1, []])  # fmt: skip
    return labels(body[1])


def labels(node: list[Any]) -> dict[str, Any]:
    """{label: (id, {child label: (id, ...)})}: a menu node as a tree of labels."""
    tree: dict[str, Any] = {}
    for child in node[2]:
        assert isinstance(child, Variant) and child.signature == "(ia{sv}av)"
        props = child.value[1]
        label = props["label"].value if "label" in props else "---"
        tree[label if label not in tree else f"{label}#{len(tree)}"] = (
            child.value[0],
            labels(child.value),
        )
    return tree


def click(address: str, name: str, item_id: int) -> None:
    call(address, destination=name, path="/MenuBar", interface=MENU, member="Event",
         signature="isvu", body=[item_id, "clicked", Variant("s", ""), 0])  # fmt: skip
