"""The rooms keep to their layer: read every import (top-level and inside functions) with
`ast`, and fail on one that goes the wrong way (see the README's Layout)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "vmdesk"

# room -> the vmdesk packages it must never import
FORBIDDEN = {
    "core": ("engines", "supervisor", "service", "cli", "web", "storage", "networking"),
    "storage": ("engines", "supervisor", "service", "cli", "web"),
    "networking": ("engines", "supervisor", "service", "cli", "web"),
    # the agents' protocols: engine-neutral, spoken by whoever holds the channel
    "integration": ("engines", "supervisor", "service", "cli", "web", "storage", "networking"),
    "display": ("engines", "supervisor", "service", "cli", "web"),
    "engines": ("supervisor", "service", "cli", "web"),
    "supervisor": ("service", "cli", "web"),
    "service": ("cli", "web"),
    # the app: a client of the service and host of the web app, like the CLI
    "desktop": ("engines", "supervisor", "cli"),
}
# One engine never imports another.
ENGINES = ("qemu", "vz", "libvirt")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every vmdesk module ``path`` imports, with its line."""
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base]) if base else ".".join(parent)
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
            found.append((node.lineno, base))
    return [(line, name) for line, name in found if name.startswith("vmdesk.")]


def _violations(path: Path) -> list[str]:
    parts = path.relative_to(SRC).parts
    room = parts[0]
    bad = []
    for line, name in _imports(path):
        target = name.split(".")
        where = f"{path.relative_to(SRC.parent)}:{line} imports {name}"
        if len(target) > 1 and target[1] in FORBIDDEN.get(room, ()):
            bad.append(where)
        own_engine = parts[1] if room == "engines" and len(parts) > 2 else None
        other = target[2] if len(target) > 2 and target[1] == "engines" else None
        if own_engine in ENGINES and other in ENGINES and other != own_engine:
            bad.append(where + " (one engine importing another)")
    return bad


def test_the_layers_are_kept() -> None:
    bad = [v for path in sorted(SRC.rglob("*.py")) for v in _violations(path)]
    assert bad == []


def test_the_check_finds_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above can fail: a storage module that asks a supervisor is caught, and so is
    an engine that imports the other one (in a function body, too)."""
    root = tmp_path / "vmdesk"
    (root / "storage").mkdir(parents=True)
    (root / "engines" / "vz").mkdir(parents=True)
    (root / "storage" / "bad.py").write_text("def f():\n    from vmdesk.supervisor import client\n")
    (root / "engines" / "vz" / "bad.py").write_text(
        "from vmdesk.engines.qemu.doctor import Check\n"
    )
    monkeypatch.setattr(__import__(__name__, fromlist=["SRC"]), "SRC", root)
    assert _violations(root / "storage" / "bad.py") == [
        "vmdesk/storage/bad.py:2 imports vmdesk.supervisor.client",
        "vmdesk/storage/bad.py:2 imports vmdesk.supervisor",
    ]
    assert len(_violations(root / "engines" / "vz" / "bad.py")) == 2


def test_no_room_is_empty() -> None:
    """A package under src/vmdesk holds code, not just an `__init__.py`."""
    empty = [
        p.name
        for p in SRC.iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and len(list(p.glob("*.py"))) < 2
    ]
    assert empty == []
