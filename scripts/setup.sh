#!/usr/bin/env bash
# One-time (and idempotent) host setup: Debian packages, the arm64 package index used to
# build aarch64 guests, and the project's virtualenv. Safe to run again; fast when done.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
    qemu-system-x86 qemu-system-arm qemu-utils ovmf qemu-efi-aarch64
    swtpm swtpm-tools busybox-static cpio kmod mtools iproute2
    passt  # NAT NICs' user-mode network (QEMU's slirp where it is missing)
    python3 python3-venv python3-pip ca-certificates make
    chromium
    wrk  # the load generator of benchmark P8 (make bench)
    # the desktop image (vmdesk image build debian-desktop): its root file system, then its
    # GPT disk written without loop devices; arm64 packages configured through qemu-user
    mmdebstrap fdisk e2fsprogs qemu-user-static arch-test
    openssh-client  # vmdesk ssh, and the VM tests' throwaway keys
    # the libraries Debian's cloud-init needs to check a cloud-init seed's user-data against
    # its schema (the tests run cloud-init's checker from its unpacked package: no services)
    python3-jsonschema python3-configobj python3-requests python3-jsonpatch python3-jinja2
    python3-netifaces
    # vmdesk clipboard --sync on an X11 desktop, and the X server its test runs it against
    xclip xvfb
    # the I/O benchmarks' host side (bench/disk_io_bench.py, net_bench.py)
    fio iperf3
    # the libvirt engine: libvirt-python is built against libvirt's headers; the tests run
    # a libvirtd of their own (tests/libvirt_daemon.py), validate domain XML with libvirt's
    # schemas (virt-xml-validate needs xmllint) and reach a second host over sshd
    libvirt-dev pkg-config libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
    libxml2-utils openssh-server
    # the desktop app (vmdesk app): its window is WebKitGTK (PyGObject is built against
    # GObject introspection and cairo); its tests run it under Xvfb on a bus of their own,
    # find windows with xdotool and xprop, close them through a window manager (openbox,
    # wmctrl), show notifications (dunst), and read the screen back (ImageMagick, OCR)
    gir1.2-gtk-3.0 gir1.2-webkit2-4.1 libgirepository1.0-dev libcairo2-dev dbus
    libgl1-mesa-dri librsvg2-common  # recommended by WebKit and GTK: GL and SVG icons
    xdotool x11-utils imagemagick tesseract-ocr desktop-file-utils shared-mime-info
    openbox wmctrl dunst
    ghostscript  # renders the macOS menu-bar icon's PDF to check its pixels
)

if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: this host has no apt-get; VM-Desk's setup targets Debian and Ubuntu." >&2
    echo "setup: install QEMU, cpio and kmod yourself, then: python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'" >&2
    exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "setup: not root and no sudo: run this as root once, or install sudo" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive

need_update=0
# aarch64 guests are assembled from arm64 Debian packages: apt must know that architecture.
if [ "$(dpkg --print-architecture)" != arm64 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "setup: adding the arm64 package architecture (for aarch64 guest kernels)"
    "${SUDO[@]}" dpkg --add-architecture arm64
    need_update=1
fi
missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
# The web UI's browser libraries come from npm. Node and npm from another source (such as
# NodeSource's nodejs, which bundles npm) are used as they are.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    missing+=(nodejs npm)
fi
# An empty package index (fresh containers) also needs an update before downloads work.
if [ "${#missing[@]}" -gt 0 ] || ! apt-cache show --no-all-versions linux-image-arm64:arm64 >/dev/null 2>&1; then
    need_update=1
fi
if [ "$need_update" -eq 1 ]; then
    echo "setup: apt-get update"
    "${SUDO[@]}" apt-get update -qq
fi
# openssh-server's own setup makes a system user 'sshd' and fails where its preferred id is
# taken by another user (seen in containers): make that user first, with any free id.
if [[ " ${missing[*]} " == *" openssh-server "* ]] && ! getent passwd sshd >/dev/null; then
    "${SUDO[@]}" useradd --system --home-dir /run/sshd --shell /usr/sbin/nologin \
        --gid nogroup sshd
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=.venv/.vmdesk-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    echo "setup: installing vmdesk and its development tools into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    echo "$wanted" > "$stamp"
fi
# Bytecode for the checkout's own modules (an installed wheel has it from pip): without it
# every `vmdesk` command compiles its modules again, ~35 ms, when the environment says
# PYTHONDONTWRITEBYTECODE. Only changed files are compiled again.
.venv/bin/python -m compileall -q src/vmdesk bench >/dev/null
# The web UI's browser libraries (noVNC, xterm.js): installed by npm from the lockfile and
# copied into the served static folder (git-ignored; redone only when the lockfile or the
# copy script changes).
frontend=src/vmdesk/web/frontend
vendor=src/vmdesk/web/static/vendor
wanted=$(cat "$frontend/package-lock.json" "$frontend/copy-vendor.mjs" | sha256sum | cut -d' ' -f1)
if [ ! -f "$vendor/.installed" ] || [ "$(cat "$vendor/.installed")" != "$wanted" ]; then
    echo "setup: installing the web UI's browser libraries (npm ci)"
    (cd "$frontend" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && node copy-vendor.mjs)
    echo "$wanted" > "$vendor/.installed"
fi
echo "setup: ready"
