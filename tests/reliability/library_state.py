"""A crash campaign's view of a library, from what is on disk and what the CLI says: the
VMs' descriptions, their disks' health and data, the snapshots, and what was left over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

MIB = 1 << 20


class Library:
    def __init__(self, root: Path, exports: Path) -> None:
        self.root = root
        self.exports = exports  # where exports go, and the bundle that is imported
        self.env = {**os.environ, "VMDESK_HOME": str(root), "VMDESK_ACCEL": "tcg"}

    def vmdesk(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "vmdesk.cli.main", *args], env=self.env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=120, check=False)  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"vmdesk {' '.join(args)}: {done.stderr.strip()}")
        return done

    def bundle(self, name: str) -> Path:
        return self.root / f"{name}.vmdesk"

    def configs(self) -> dict[str, Any]:
        """Each visible bundle's description (a string saying why, when it does not load)."""
        out: dict[str, Any] = {}
        for bundle in sorted(self.root.glob("*.vmdesk")):
            try:
                out[bundle.name.removesuffix(".vmdesk")] = json.loads(
                    (bundle / "config.json").read_text()
                )
            except (OSError, ValueError) as exc:
                out[bundle.name.removesuffix(".vmdesk")] = f"unreadable: {exc}"
        return out

    def listed(self) -> list[str]:
        """The names `vmdesk list` shows (it must answer whatever was killed)."""
        return sorted(row["name"] for row in json.loads(self.vmdesk("list", "--json").stdout))

    def snapshots(self, name: str) -> list[str]:
        tree = json.loads(self.vmdesk("snapshot", "list", name, "--json").stdout)
        return sorted(s["name"] for s in tree["snapshots"])

    def leftovers(self) -> list[str]:
        """Hidden staging directories and partial copies: in the library, among the linked
        clones' bases (which are the library's own) and where exports go."""
        bases = self.root / ".bases"
        hidden = [*self.root.glob(".*"), *bases.rglob(".*"), *self.exports.glob(".*"),
                  *self.root.glob("*.vmdesk/disks/.*")]  # fmt: skip
        return sorted(str(p) for p in hidden if p != bases and not p.name.endswith(".lock"))


def disk(bundle: Path, index: int = 0) -> Path:
    return bundle / "disks" / f"disk{index}.qcow2"


def problems_of_disks(*bundles: Path) -> list[str]:
    """`qemu-img check` of every qcow2 disk in these bundles: what it found."""
    found = []
    for bundle in bundles:
        for image in sorted(i for i in bundle.glob("disks/*.qcow2") if not i.name.startswith(".")):
            done = subprocess.run(["qemu-img", "check", "--output=json", str(image)],
                                  capture_output=True, text=True, check=False)  # fmt: skip
            try:
                report = json.loads(done.stdout)
            except ValueError:
                found.append(f"{image}: {done.stderr.strip()[:200]}")
                continue
            if report.get("check-errors") or report.get("corruptions") or report.get("leaks"):
                found.append(f"{image}: {report}")
    return found


def virtual_size(image: Path) -> int:
    out = subprocess.run(["qemu-img", "info", "--output=json", "-U", str(image)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return int(json.loads(out)["virtual-size"])


def holds(image: Path, byte: int, size: int) -> bool:
    done = subprocess.run(["qemu-io", "-r", "-U", "-f", "qcow2", "-c",
                           f"read -P {byte:#x} 0 {size}", str(image)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return done.returncode == 0 and "verification failed" not in done.stdout.lower()


def fill(image: Path, byte: int, size: int) -> None:
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {byte:#x} 0 {size}", str(image)],
                   capture_output=True, check=True)  # fmt: skip


def same_data(first: Path, second: Path) -> bool:
    done = subprocess.run(["qemu-img", "compare", "-U", str(first), str(second)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return done.returncode == 0
