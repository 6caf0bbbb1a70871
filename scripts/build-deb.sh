#!/usr/bin/env bash
# A Debian package of VM-Desk (for Debian 12 and this machine's architecture) into DIR
# (default dist/). It carries VM-Desk's wheel and every wheel it needs; installing it
# makes its own venv in /opt/vmdesk from them (no network), and `vmdesk` on the PATH.
# QEMU, its firmware and swtpm are Debian's own packages, named as dependencies.
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
    "$root/usr/share/icons/hicolor/scalable/apps" "$root/usr/share/doc/vmdesk"
.venv/bin/python -m pip wheel -q --wheel-dir "$wheels" "$work/dist/vmdesk-$version-py3-none-any.whl"
cat > "$root/usr/bin/vmdesk" <<'SH'
#!/bin/sh
exec /opt/vmdesk/venv/bin/vmdesk "$@"
SH
chmod 755 "$root/usr/bin/vmdesk"
install -m 644 packaging/debian/vmdesk.desktop "$root/usr/share/applications/"
install -m 644 packaging/debian/vmdesk.svg "$root/usr/share/icons/hicolor/scalable/apps/"
install -m 644 README.md "$root/usr/share/doc/vmdesk/"
cat > "$root/DEBIAN/control" <<CONTROL
Package: vmdesk
Version: $version
Architecture: $arch
Maintainer: VM-Desk <vmdesk@localhost>
Section: admin
Priority: optional
Depends: python3 (>= 3.11), python3-venv, qemu-system-x86, qemu-system-arm, qemu-utils,
 ovmf, qemu-efi-aarch64, swtpm, swtpm-tools
Recommends: passt, busybox-static, cpio, kmod, mtools, libvirt-clients
Installed-Size: $(du -ks "$root" | cut -f1)
Description: desktop virtual-machine manager
 Create, run and manage QEMU virtual machines from one command, a web app in the
 browser, or scripts: snapshots, clones, shared folders, the clipboard, and VMs on
 other hosts through libvirt.
CONTROL
cat > "$root/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    rm -rf /opt/vmdesk/venv
    python3 -m venv /opt/vmdesk/venv
    /opt/vmdesk/venv/bin/pip install -q --no-index --find-links /usr/share/vmdesk/wheels vmdesk
fi
SH
cat > "$root/DEBIAN/postrm" <<'SH'
#!/bin/sh
set -e
if [ "$1" = remove ] || [ "$1" = purge ]; then
    rm -rf /opt/vmdesk
fi
SH
chmod 755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"
find "$root" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out"
deb="$out/vmdesk_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "build-deb: $deb"
