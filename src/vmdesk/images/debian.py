"""Debian packages as a source of guest parts: resolve, download and unpack with apt/dpkg."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vmdesk.core.errors import HostToolMissing, ImageBuildError

_APT_HINT = (
    "building guest images needs a Debian or Ubuntu host with apt-get, apt-cache and dpkg-deb; "
    "on other hosts, point VM-Desk at an existing kernel and initrd instead"
)


@dataclass(frozen=True)
class Package:
    name: str  # with ":arch" when foreign, as apt wants it
    version: str

    @property
    def spec(self) -> str:
        return f"{self.name}={self.version}"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise HostToolMissing(f"{name} was not found on this host", hint=_APT_HINT)
    return path


def _run(argv: list[str], *, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(
            argv, cwd=cwd, check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip().splitlines()
        raise ImageBuildError(
            f"`{' '.join(argv)}` failed: {detail[-1] if detail else f'exit {exc.returncode}'}",
            hint="check that apt works on this host (`sudo apt-get update`) and try again",
        ) from exc
    return done.stdout


def ensure_architecture(debian_arch: str) -> None:
    """Make apt know packages of ``debian_arch`` (adds it as a foreign architecture as root)."""
    native = _run([_tool("dpkg"), "--print-architecture"]).strip()
    if debian_arch == native:
        return
    foreign = _run([_tool("dpkg"), "--print-foreign-architectures"]).split()
    if debian_arch in foreign:
        return
    if os.geteuid() != 0:
        raise ImageBuildError(
            f"apt does not list {debian_arch} packages on this host",
            hint=f"run `sudo dpkg --add-architecture {debian_arch} && sudo apt-get update` "
            "(or `make setup`), then try again",
        )
    _run([_tool("dpkg"), "--add-architecture", debian_arch])
    _run([_tool("apt-get"), "update", "-qq"])


def show(name: str) -> dict[str, str]:
    """The candidate version's control fields, as ``apt-cache show`` prints them."""
    text = _run([_tool("apt-cache"), "show", "--no-all-versions", name])
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line.startswith((" ", "\t")) and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    if "Version" not in fields:
        raise ImageBuildError(
            f"apt knows no package {name}",
            hint="run `sudo apt-get update` (or `make setup`) so apt's package lists are current",
        )
    return fields


def candidate(name: str) -> Package:
    return Package(name, show(name)["Version"])


def kernel_package(debian_arch: str) -> Package:
    """The versioned generic kernel that ``linux-image-ARCH`` currently points at."""
    meta = f"linux-image-{debian_arch}:{debian_arch}"
    depends = show(meta).get("Depends", "")
    match = re.search(r"(linux-image-[0-9][^\s,(:]*)", depends)
    if match is None:
        raise ImageBuildError(
            f"could not find the kernel that {meta} depends on (Depends: {depends!r})",
            hint="this needs Debian's linux-image meta-packages; check `apt-cache show "
            + meta
            + "`",
        )
    return candidate(f"{match.group(1)}:{debian_arch}")


def download(packages: list[Package], dest: Path) -> list[Path]:
    """``apt-get download`` into ``dest``; returns the .deb files in the order given."""
    dest.mkdir(parents=True, exist_ok=True)
    # apt drops privileges to _apt for downloads; let it write into our temp dir.
    dest.chmod(0o777)
    _run([_tool("apt-get"), "download", "-q", *[p.spec for p in packages]], cwd=dest)
    debs: list[Path] = []
    for pkg in packages:
        base = pkg.name.split(":", 1)[0]
        found = sorted(dest.glob(f"{base}_*.deb"))
        if not found:
            raise ImageBuildError(f"apt-get download left no .deb for {pkg.spec}")
        debs.append(found[-1])
    return debs


def extract(deb: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    _run([_tool("dpkg-deb"), "-x", str(deb), str(dest)])
