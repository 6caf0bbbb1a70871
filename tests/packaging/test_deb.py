"""The Debian package: built twice by scripts/build-deb.sh (the same bytes), installed into a
fresh Debian 12 root made by mmdebstrap with the dependencies it names (so they resolve
there), where `vmdesk --version` and `vmdesk doctor` run; removing it removes its venv."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Debian packages this machine has fetched already (setup's) seed the new root's download
SEED_CACHE = """set -e
mkdir -p "$1/var/cache/apt/archives"
for deb in /var/cache/apt/archives/*.deb; do
    [ -e "$deb" ] || continue
    ln -f "$deb" "$1/var/cache/apt/archives/" 2>/dev/null || cp "$deb" "$1/var/cache/apt/archives/"
done
"""

WINDOW_CHECK = """import gi, webview, dbus_fast
gi.require_version("Gtk", "3.0"); gi.require_version("WebKit2", "4.1")
from gi.repository import WebKit2
print("ok")"""


def _build(into: Path) -> Path:
    subprocess.run(["bash", str(ROOT / "scripts" / "build-deb.sh"), str(into)], check=True,
                   capture_output=True, timeout=900)  # fmt: skip
    [deb] = into.glob("vmdesk_*.deb")
    return deb


def _field(deb: Path, name: str) -> str:
    done = subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout.strip()


def _chroot(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip


def test_the_deb_installs_into_a_fresh_debian_and_runs(tmp_path: Path) -> None:
    deb = _build(tmp_path / "one")
    again = _build(tmp_path / "two")
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (deb, again)]
    assert digest[0] == digest[1], "the same checkout builds the same package"

    depends = [d.split("(")[0].strip() for d in _field(deb, "Depends").split(",")]
    hook = tmp_path / "seed-cache.sh"
    hook.write_text(SEED_CACHE)
    root = tmp_path / "root"
    done = subprocess.run([
        "mmdebstrap", "--mode=root", "--variant=apt", f"--include={','.join(depends)}",
        "--skip=download/empty", f"--setup-hook=sh {hook} \"$1\"",
        f"--customize-hook=copy-in {deb} /tmp",
        f"--customize-hook=chroot \"$1\" dpkg -i /tmp/{deb.name}",  # fails on a missing dep
        "bookworm", str(root),
    ], capture_output=True, text=True, timeout=1200, check=False)  # fmt: skip
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        version = _chroot(root, "vmdesk", "--version")
        assert version.returncode == 0 and "0.1.0" in version.stdout, version.stderr
        doctor = _chroot(root, "vmdesk", "doctor")
        assert doctor.returncode == 0 and "this host can run VMs" in doctor.stdout, doctor
        assert "qemu-system-x86_64" in doctor.stdout and "swtpm" in doctor.stdout
        # The app window's toolkit: pywebview from our wheels, GTK and WebKit from Debian.
        window = _chroot(root, "/opt/vmdesk/venv/bin/python", "-c", WINDOW_CHECK)
        assert window.returncode == 0 and window.stdout.strip() == "ok", window.stderr
        desktop = (root / "usr/share/applications/vmdesk.desktop").read_text()
        assert "Exec=vmdesk open --show-errors %u" in desktop and "Icon=vmdesk" in desktop
        assert (root / "usr/share/icons/hicolor/scalable/apps/vmdesk.svg").is_file()
        removed = _chroot(root, "dpkg", "--purge", "vmdesk")
        assert removed.returncode == 0, removed.stderr
        assert not (root / "opt/vmdesk").exists() and not (root / "usr/bin/vmdesk").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)
