"""The tray icon's menu as data: which items the VMs' states call for, and the same tree in
the shape com.canonical.dbusmenu's GetLayout returns. Pure functions; tray.py serves them.

An item's id is derived from what it means ("Start" of VM "web"), not from where it sits, so
an id a menu host still holds from an older layout names the same thing or nothing at all:
a click that raced a refresh can never land on the item that took its place.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:  # dbus-fast is Linux's: the menu model also serves the macOS menu bar
    from dbus_fast import Variant

# Live VMs: a quit must decide what happens to them.
LIVE_STATES = frozenset({"running", "paused"})
# States a VM can be started (or resumed from disk) from.
STARTABLE_STATES = frozenset({"stopped", "suspended", "crashed"})
ROOT_ID = 0
_ID_SPACE = 1 << 31  # dbusmenu ids are int32; 0 is the root's

# GetLayout's node: (id, properties, children as Variant('(ia{sv}av)', node)).
Layout = tuple[int, "dict[str, Variant]", "list[Variant]"]


@dataclass(frozen=True, slots=True)
class VMRow:
    name: str
    state: str


@dataclass(frozen=True, slots=True)
class MenuItem:
    id: int
    label: str
    enabled: bool = True
    children: tuple[MenuItem, ...] = ()
    action: tuple[str, ...] | None = None
    separator: bool = False


class _Ids:
    """Ids from each item's key, unique within one tree: a (rare) hash collision takes the
    next free id, in the order of the walk that builds the tree, so it too is deterministic."""

    def __init__(self) -> None:
        self._taken = {ROOT_ID}

    def take(self, *key: str) -> int:
        found = zlib.crc32("\x1f".join(key).encode()) % _ID_SPACE
        while found in self._taken:
            found = (found + 1) % _ID_SPACE
        self._taken.add(found)
        return found


def build_menu(rows: Sequence[VMRow], window_visible: bool) -> MenuItem:
    """The whole menu, its root (id 0) holding the top-level items in order.

    ``window_visible`` changes nothing yet: "Open VM-Desk" shows the window and raises it,
    whether it was hidden or only behind others."""
    ids = _Ids()
    items = [MenuItem(ids.take("show"), "Open VM-Desk", action=("show",)), _separator(ids, "top")]
    if rows:
        items += [_vm_menu(ids, row) for row in rows]
    else:
        items.append(MenuItem(ids.take("empty"), "No virtual machines", enabled=False))
        items.append(MenuItem(ids.take("create"), "Create a VM…", action=("show", "/new")))
    items += [_separator(ids, "bottom"), _quit(ids, rows)]
    return MenuItem(ROOT_ID, "", children=tuple(items))


def _separator(ids: _Ids, where: str) -> MenuItem:
    return MenuItem(ids.take("separator", where), "", separator=True)


def _vm_menu(ids: _Ids, row: VMRow) -> MenuItem:
    own = ids.take("vm", row.name)  # before its children: the walk is pre-order
    verbs: list[tuple[str, str]] = []
    if row.state in STARTABLE_STATES:
        verbs.append(("Start", "start"))
    elif row.state == "running":
        verbs += [("Stop", "stop"), ("Suspend", "suspend")]
    elif row.state == "paused":
        verbs.append(("Resume", "resume"))
    verbs.append(("Open console", "console"))
    children = tuple(
        MenuItem(ids.take("vm", row.name, verb), label, action=(verb, row.name))
        for label, verb in verbs
    )
    return MenuItem(own, f"{row.name} — {row.state}", children=children)


def _quit(ids: _Ids, rows: Sequence[VMRow]) -> MenuItem:
    own = ids.take("quit")
    live = sum(row.state in LIVE_STATES for row in rows)
    if not live:
        return MenuItem(own, "Quit", action=("quit", "leave"))
    vms = "1 VM" if live == 1 else f"{live} VMs"
    choices = (
        (f"Leave {vms} running and quit", "leave"),
        ("Suspend all and quit", "suspend"),
        ("Stop all and quit", "stop"),
    )
    children = tuple(
        MenuItem(ids.take("quit", how), label, action=("quit", how)) for label, how in choices
    )
    return MenuItem(own, "Quit", children=children)


def tooltip(rows: Sequence[VMRow]) -> str:
    """The tray icon's tooltip text: how many VMs are live."""
    live = sum(row.state in LIVE_STATES for row in rows)
    if not rows:
        return "No virtual machines"
    if not live:
        return "No VM running"
    vms = "VM" if len(rows) == 1 else "VMs"
    return f"{live} of {len(rows)} {vms} running"


def walk(root: MenuItem) -> Iterator[MenuItem]:
    """Every item of the tree, root first, depth first."""
    yield root
    for child in root.children:
        yield from walk(child)


def find(root: MenuItem, item_id: int) -> MenuItem | None:
    return next((item for item in walk(root) if item.id == item_id), None)


def _escape(label: str) -> str:
    # dbusmenu reads "_x" as an access key and shows "__" as "_": a VM named "my_vm" must
    # not lose its underscore.
    return label.replace("_", "__")


def properties(item: MenuItem, names: Collection[str] = ()) -> dict[str, Variant]:
    """The item's dbusmenu properties; only those in ``names`` when it names any."""
    from dbus_fast import Variant

    props: dict[str, Variant]
    if item.id == ROOT_ID:
        props = {"children-display": Variant("s", "submenu")}
    elif item.separator:
        props = {"type": Variant("s", "separator"), "visible": Variant("b", True)}
    else:
        props = {
            "label": Variant("s", _escape(item.label)),
            "enabled": Variant("b", item.enabled),
            "visible": Variant("b", True),
        }
        if item.children:
            props["children-display"] = Variant("s", "submenu")
    return {key: value for key, value in props.items() if not names or key in names}


def layout_node(item: MenuItem, depth: int = -1, names: Collection[str] = ()) -> Layout:
    """``item`` and its descendants ``depth`` levels down (any negative depth: all of them)."""
    from dbus_fast import Variant

    children = (
        []
        if depth == 0
        else [Variant("(ia{sv}av)", layout_node(c, depth - 1, names)) for c in item.children]
    )
    return (item.id, properties(item, names), children)


def get_layout(
    root: MenuItem,
    revision: int,
    parent_id: int = ROOT_ID,
    depth: int = -1,
    names: Collection[str] = (),
) -> tuple[int, Layout]:
    """GetLayout's answer: ``(revision, layout)``. KeyError when ``parent_id`` is no item."""
    parent = find(root, parent_id)
    if parent is None:
        raise KeyError(parent_id)
    return (revision, layout_node(parent, depth, names))


def group_properties(
    root: MenuItem, ids: Collection[int], names: Collection[str] = ()
) -> list[tuple[int, dict[str, Variant]]]:
    """GetGroupProperties' answer: each known item of ``ids`` (every item when it is empty)
    with its properties; ids that name no item are left out."""
    return [(item.id, properties(item, names)) for item in walk(root) if not ids or item.id in ids]
