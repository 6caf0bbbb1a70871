#!/usr/bin/env bash
# A Debian package of VM-Desk (for Debian 12 and this machine's architecture) into DIR
# (default dist/). It carries VM-Desk's wheel and every wheel it needs; installing it
# makes its own venv in /opt/vmdesk from them (no network), and `vmdesk` on the PATH.
# QEMU, its firmware and swtpm are Debian's own packages, named as dependencies, and so
# are the app window's GTK and WebKit bindings (python3-gi: the venv sees Debian's own).
# Desktop integration: a menu entry that runs `vmdesk open %u` (the app; bundles and
# vmdesk:// links), the bundle's MIME type, and the icon as SVG and as PNGs rendered by
# packaging/render_icon.py (Pillow, from the dev venv: the same pixels every build).
# Reproducible: file times are the last commit's (SOURCE_DATE_EPOCH).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist}")
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 315532800)
export SOURCE_DATE_EPOCH
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bash scripts/build-dist.sh "$work/dist" >/dev/null
version=$(.venv/bin/python -c "import vmdesk; print(vmdesk.__version__)")
arch=$(dpkg --print-architecture)
root="$work/root"
wheels="$root/usr/share/vmdesk/wheels"
mkdir -p "$wheels" "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/applications" \
    "$root/usr/share/icons/hicolor/scalable/apps" "$root/usr/share/doc/vmdesk" \
    "$root/usr/share/mime/packages"
wheel="$work/dist/vmdesk-$version-py3-none-any.whl"
# The `app` extra's requirements (pywebview, the tray's D-Bus), as the wheel names them, but
# PyGObject: Debian's python3-gi stands in for it (no compiler, headers or cairo at install).
mapfile -t app < <(.venv/bin/python - "$wheel" <<'PY'
import sys, zipfile
from email.parser import Parser
from packaging.requirements import Requirement

with zipfile.ZipFile(sys.argv[1]) as whl:
    [meta] = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
    requires = Parser().parsestr(whl.read(meta).decode()).get_all("Requires-Dist") or []
for req in map(Requirement, requires):
    on_linux_app = req.marker is not None and req.marker.evaluate({"extra": "app"})
    if on_linux_app and not req.marker.evaluate({"extra": ""}) and req.name.lower() != "pygobject":
        req.marker = None
        print(req)
PY
)
.venv/bin/python -m pip wheel -q --wheel-dir "$wheels" "$wheel" "${app[@]}"
cat > "$root/usr/bin/vmdesk" <<'SH'
#!/bin/sh
exec /opt/vmdesk/venv/bin/vmdesk "$@"
SH
chmod 755 "$root/usr/bin/vmdesk"
install -m 644 packaging/debian/vmdesk.desktop "$root/usr/share/applications/"
install -m 644 packaging/debian/vmdesk.svg "$root/usr/share/icons/hicolor/scalable/apps/"
.venv/bin/python packaging/render_icon.py hicolor packaging/debian/vmdesk.svg \
    "$root/usr/share/icons/hicolor"
install -m 644 packaging/debian/vmdesk-mime.xml "$root/usr/share/mime/packages/vmdesk.xml"
install -m 644 README.md "$root/usr/share/doc/vmdesk/"
cat > "$root/DEBIAN/control" <<CONTROL
Package: vmdesk
Version: $version
Architecture: $arch
Maintainer: VM-Desk <vmdesk@localhost>
Section: admin
Priority: optional
Depends: python3 (>= 3.11), python3-venv, qemu-system-x86, qemu-system-arm, qemu-utils,
 ovmf, qemu-efi-aarch64, swtpm, swtpm-tools, python3-gi, gir1.2-gtk-3.0, gir1.2-webkit2-4.1
Recommends: passt, busybox-static, cpio, kmod, mtools, libvirt-clients, shared-mime-info,
 desktop-file-utils
Installed-Size: $(du -ks "$root" | cut -f1)
Description: desktop virtual-machine manager
 Create, run and manage QEMU virtual machines from one command, a web app in the
 browser, or scripts: snapshots, clones, shared folders, the clipboard, and VMs on
 other hosts through libvirt.
CONTROL
# The venv sees Debian's site-packages for python3-gi (GTK and WebKit for the app window:
# PyGObject from PyPI would need a compiler); every wheel we carry goes into it (vmdesk and
# the app's), --ignore-installed so that a Debian python3-* is never used instead of one.
# The MIME and desktop databases: Debian's triggers update them as well; these calls (when
# the tools are there: they are only recommended) make the type known at once.
cat > "$root/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    rm -rf /opt/vmdesk/venv
    python3 -m venv --system-site-packages /opt/vmdesk/venv
    /opt/vmdesk/venv/bin/pip install -q --no-index --ignore-installed \
        --find-links /usr/share/vmdesk/wheels /usr/share/vmdesk/wheels/*.whl
    if command -v update-mime-database >/dev/null; then update-mime-database /usr/share/mime; fi
    if command -v update-desktop-database >/dev/null; then update-desktop-database -q; fi
fi
SH
cat > "$root/DEBIAN/postrm" <<'SH'
#!/bin/sh
set -e
if [ "$1" = remove ] || [ "$1" = purge ]; then
    rm -rf /opt/vmdesk
    if command -v update-mime-database >/dev/null; then update-mime-database /usr/share/mime; fi
    if command -v update-desktop-database >/dev/null; then update-desktop-database -q; fi
fi
SH
chmod 755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"
find "$root" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out"
deb="$out/vmdesk_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "build-deb: $deb"
