"""The tray menu as data: which items each VM state calls for, the Quit question, ids that
stay put, and the GetLayout structure dbusmenu hosts read."""

from __future__ import annotations

import pytest
from dbus_fast import Variant

from vmdesk.desktop import tray_menu
from vmdesk.desktop.tray_menu import MenuItem, VMRow


def labels(items: tuple[MenuItem, ...]) -> list[str]:
    return ["---" if item.separator else item.label for item in items]


def vm_menu(root: MenuItem, name: str) -> MenuItem:
    return next(item for item in root.children if item.label.startswith(f"{name} — "))


def actions(item: MenuItem) -> dict[str, tuple[str, ...] | None]:
    return {child.label: child.action for child in item.children}


def test_each_state_offers_what_it_can_do() -> None:
    states = ["stopped", "suspended", "crashed", "running", "paused", "starting", "stopping"]
    root = tray_menu.build_menu([VMRow(f"vm{i}", s) for i, s in enumerate(states)], False)
    got = {s: actions(vm_menu(root, f"vm{i}")) for i, s in enumerate(states)}
    for i, startable in enumerate(["stopped", "suspended", "crashed"]):
        assert got[startable] == {
            "Start": ("start", f"vm{i}"),
            "Open console": ("console", f"vm{i}"),
        }
    assert got["running"] == {
        "Stop": ("stop", "vm3"),
        "Suspend": ("suspend", "vm3"),
        "Open console": ("console", "vm3"),
    }
    assert got["paused"] == {"Resume": ("resume", "vm4"), "Open console": ("console", "vm4")}
    assert got["starting"] == {"Open console": ("console", "vm5")}  # nothing to do meanwhile
    assert got["stopping"] == {"Open console": ("console", "vm6")}
    assert vm_menu(root, "vm3").label == "vm3 — running"


def test_the_layout_around_the_vms() -> None:
    root = tray_menu.build_menu([VMRow("web", "stopped"), VMRow("db", "stopped")], False)
    assert labels(root.children) == [
        "Open VM-Desk",
        "---",
        "web — stopped",
        "db — stopped",
        "---",
        "Quit",
    ]
    assert root.id == 0
    assert root.children[0].action == ("show",)
    quit_item = root.children[-1]
    assert quit_item.action == ("quit", "leave") and not quit_item.children
    shown = tray_menu.build_menu([], True).children[0]  # the window up: the same words
    assert (shown.label, shown.action) == ("Open VM-Desk", ("show",))


def test_no_vms_offers_to_create_one() -> None:
    root = tray_menu.build_menu([], False)
    assert labels(root.children) == [
        "Open VM-Desk",
        "---",
        "No virtual machines",
        "Create a VM…",
        "---",
        "Quit",
    ]
    empty, create = root.children[2], root.children[3]
    assert not empty.enabled and empty.action is None
    assert create.enabled and create.action == ("show", "/new")


def test_quit_asks_what_to_do_with_live_vms() -> None:
    rows = [VMRow("a", "running"), VMRow("b", "paused"), VMRow("c", "stopped")]
    quit_item = tray_menu.build_menu(rows, False).children[-1]
    assert quit_item.label == "Quit" and quit_item.action is None
    assert actions(quit_item) == {
        "Leave 2 VMs running and quit": ("quit", "leave"),
        "Suspend all and quit": ("quit", "suspend"),
        "Stop all and quit": ("quit", "stop"),
    }
    one = tray_menu.build_menu([VMRow("a", "running")], False).children[-1]
    assert one.children[0].label == "Leave 1 VM running and quit"
    # Starting and stopping VMs are not live yet (or any more): a plain Quit.
    calm = tray_menu.build_menu([VMRow("a", "starting"), VMRow("b", "suspended")], False)
    assert calm.children[-1].action == ("quit", "leave")


def test_ids_are_unique_stable_and_follow_meaning() -> None:
    rows = [VMRow(f"vm-{i}", "running" if i % 2 else "stopped") for i in range(40)]
    root = tray_menu.build_menu(rows, False)
    ids = [item.id for item in tray_menu.walk(root)]
    assert len(ids) == len(set(ids)) and ids[0] == 0 and all(0 < i < 2**31 for i in ids[1:])
    assert tray_menu.build_menu(list(rows), False) == root  # same input, same tree, same ids
    # vm-0 starts: vm-1's items keep their ids although the items before them changed.
    changed = tray_menu.build_menu([VMRow("vm-0", "running"), *rows[1:]], False)
    before, after = vm_menu(root, "vm-1"), vm_menu(changed, "vm-1")
    assert [c.id for c in before.children] == [c.id for c in after.children]
    # The id "Start" of vm-0 had is gone, not reused for something else.
    start = next(c for c in vm_menu(root, "vm-0").children if c.label == "Start")
    assert tray_menu.find(changed, start.id) is None
    # Two rows with one name (never expected) still get distinct ids.
    twice = tray_menu.build_menu([VMRow("x", "stopped"), VMRow("x", "stopped")], False)
    ids = [item.id for item in tray_menu.walk(twice)]
    assert len(ids) == len(set(ids))


def test_get_layout_structure() -> None:
    root = tray_menu.build_menu([VMRow("my_vm", "running")], False)
    revision, (root_id, root_props, children) = tray_menu.get_layout(root, 7)
    assert (revision, root_id) == (7, 0)
    assert root_props == {"children-display": Variant("s", "submenu")}
    assert all(isinstance(c, Variant) and c.signature == "(ia{sv}av)" for c in children)
    nodes = [c.value for c in children]
    assert nodes[0][1] == {
        "label": Variant("s", "Open VM-Desk"),
        "enabled": Variant("b", True),
        "visible": Variant("b", True),
    }
    assert nodes[1][1] == {"type": Variant("s", "separator"), "visible": Variant("b", True)}
    _, vm_props, vm_children = nodes[2]
    # dbusmenu shows "__" as "_" (a single "_" marks an access key).
    assert vm_props["label"] == Variant("s", "my__vm — running")
    assert vm_props["children-display"] == Variant("s", "submenu")
    assert [c.value[1]["label"].value for c in vm_children] == ["Stop", "Suspend", "Open console"]
    assert nodes[-1][1]["children-display"] == Variant("s", "submenu")  # the Quit question


def test_get_layout_from_a_parent_with_depth_and_names() -> None:
    root = tray_menu.build_menu([VMRow("web", "stopped")], False)
    vm = vm_menu(root, "web")
    _, (got_id, props, children) = tray_menu.get_layout(root, 1, vm.id, 1, ["label"])
    assert got_id == vm.id and props == {"label": Variant("s", "web — stopped")}
    assert [(c.value[0], c.value[1], c.value[2]) for c in children] == [
        (vm.children[0].id, {"label": Variant("s", "Start")}, []),
        (vm.children[1].id, {"label": Variant("s", "Open console")}, []),
    ]
    assert tray_menu.get_layout(root, 1, 0, 0)[1][2] == []  # depth 0: the node alone
    with pytest.raises(KeyError):
        tray_menu.get_layout(root, 1, 12345)


def test_group_properties() -> None:
    root = tray_menu.build_menu([], False)
    create = root.children[3]
    assert tray_menu.group_properties(root, {create.id, 99}, ["label", "enabled"]) == [
        (create.id, {"label": Variant("s", "Create a VM…"), "enabled": Variant("b", True)})
    ]
    every = tray_menu.group_properties(root, set())
    assert [i for i, _ in every] == [item.id for item in tray_menu.walk(root)]


def test_tooltip() -> None:
    assert tray_menu.tooltip([]) == "No virtual machines"
    assert tray_menu.tooltip([VMRow("a", "stopped")]) == "No VM running"
    assert tray_menu.tooltip([VMRow("a", "running"), VMRow("b", "stopped")]) == "1 of 2 VMs running"
