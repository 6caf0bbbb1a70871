#!/usr/bin/env bash
# VM-Desk.app for macOS (13+; the cask offers Apple silicon): dist/VM-Desk.app, signed ad
# hoc with the virtualization entitlement, zipped as dist/VM-Desk-VERSION-macos-ARCH.zip,
# and dist/vmdesk.rb, the Homebrew cask with that zip's sha256. py2app packs the app (why:
# packaging/macos/setup.py) from VM-Desk's wheel with its `macos` and `app` extras.
#
#   bash scripts/build-macos-app.sh [--networking]   # on a Mac
#   bash scripts/build-macos-app.sh --check          # anywhere: the inputs agree
#
# --networking signs with vmdesk-networking.entitlements (bridged NICs): only for a build
#   signed by a developer account Apple granted com.apple.vm.networking
#   (CODESIGN_IDENTITY=..., PROVISIONING_PROFILE=path/to.provisionprofile).
# Needs on the Mac: a framework build of Python 3.11+ (python.org's installer; PYTHON=...
#   picks one, default python3), Xcode's command line tools (codesign, iconutil, ditto),
#   and, only when dist/ has no vmdesk wheel of this version (one made on Linux by
#   scripts/build-dist.sh will do), node and npm for the web UI's browser libraries.
# The icon: packaging/render_icon.py draws packaging/debian/vmdesk.svg with Pillow
#   (the same pixels as the Debian package's PNGs, no rsvg-convert or qlmanage), iconutil
#   packs the sizes into an .icns.
# Reproducible where possible: file times are the last commit's (SOURCE_DATE_EPOCH), hashes
#   seeded (PYTHONHASHSEED), no extended attributes, and an ad hoc signature has no time
#   in it; py2app's byte-code and ditto's member order are not known to be (the test plan
#   builds twice and compares).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/build-macos-app.sh [--check] [--networking]"
check=0
networking=0
for arg in "$@"; do
    case "$arg" in
        --check) check=1 ;;
        --networking) networking=1 ;;
        -h | --help) echo "$usage"; exit 0 ;;
        *) echo "build-macos-app: error: unknown option $arg; $usage" >&2; exit 2 ;;
    esac
done
tool=packaging/macos/buildtool.py
if [ "$check" = 1 ]; then
    python=.venv/bin/python  # it has Pillow and platformdirs (the checks of icon and zap)
    [ -x "$python" ] || python=${PYTHON:-python3}
    exec "$python" "$tool" check
fi
if [ "$(uname -s)" != Darwin ]; then
    echo "build-macos-app: error: builds only on macOS (this is $(uname -s)); hint: run it on a Mac, or with --check to validate its inputs here" >&2
    exit 2
fi

root=$(pwd)
python=${PYTHON:-python3}
"$python" - <<'PY'
import sys, sysconfig
if sys.version_info < (3, 11) or not sysconfig.get_config_var("PYTHONFRAMEWORK"):
    sys.exit(f"build-macos-app: error: py2app needs a framework build of Python 3.11+, not "
             f"{sys.executable} ({sys.version.split()[0]}); hint: install one from "
             "python.org, then PYTHON=/usr/local/bin/python3.12 bash scripts/build-macos-app.sh")
PY
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 315532800)
export SOURCE_DATE_EPOCH PYTHONHASHSEED=0
version=$("$python" "$tool" version)
arch=$(uname -m)
work=build/macos
app=dist/VM-Desk.app
rm -rf "$work" "$app"
mkdir -p "$work" dist

# The wheel: one from dist/ (e.g. scripts/build-dist.sh's, copied from Linux), else built here.
"$python" -m venv "$work/venv"
venv_python=$work/venv/bin/python
"$venv_python" -m pip install -q --upgrade pip
wheel=dist/vmdesk-$version-py3-none-any.whl
if [ ! -f "$wheel" ]; then
    if [ ! -d src/vmdesk/web/static/vendor/novnc ]; then
        (cd src/vmdesk/web/frontend && npm ci --no-audit --no-fund --loglevel=error >/dev/null \
            && node copy-vendor.mjs)
    fi
    "$venv_python" -m pip install -q "build>=1.2,<2"
    "$venv_python" -m build --wheel --outdir dist . >/dev/null
fi
if ! unzip -Z1 "$wheel" | grep "^vmdesk/web/static/vendor/novnc/" >/dev/null; then
    echo "build-macos-app: error: $wheel lacks the web UI's browser libraries; hint: rebuild it with scripts/build-dist.sh" >&2
    exit 1
fi
"$venv_python" -m pip install -q "$wheel[macos,app]" "py2app>=0.28,<0.29" "packaging>=24" \
    "pillow>=10,<14"
"$venv_python" "$tool" check  # the inputs agree (as --check), with this venv's Pillow

"$venv_python" packaging/render_icon.py iconset packaging/debian/vmdesk.svg \
    "$work/VM-Desk.iconset"
iconutil -c icns "$work/VM-Desk.iconset" -o "$work/VM-Desk.icns"
(cd packaging/macos && VMDESK_ICNS="$root/$work/VM-Desk.icns" "$root/$venv_python" setup.py \
    py2app --dist-dir "$root/dist" --bdist-base "$root/$work/py2app" >"$root/$work/py2app.log" 2>&1) \
    || { echo "build-macos-app: error: py2app failed; hint: see $work/py2app.log" >&2; exit 1; }
[ -x "$app/Contents/MacOS/VM-Desk" ] \
    || { echo "build-macos-app: error: py2app made no $app; hint: see $work/py2app.log" >&2; exit 1; }

# Signing: the entitlements go on every binary, the interpreter the VMs' supervisors run as
# (Contents/MacOS/python, sys.executable) included: --deep signs nested code with them.
entitlements=packaging/macos/vmdesk.entitlements
[ "$networking" = 0 ] || entitlements=packaging/macos/vmdesk-networking.entitlements
"$python" "$tool" entitlements "$entitlements" "$work/entitlements.plist"
identity=${CODESIGN_IDENTITY:--}
if [ "$networking" = 1 ]; then
    if [ "$identity" = - ] || [ -z "${PROVISIONING_PROFILE:-}" ]; then
        echo "build-macos-app: warning: com.apple.vm.networking without CODESIGN_IDENTITY and PROVISIONING_PROFILE: macOS will refuse to start this app" >&2
    fi
    [ -z "${PROVISIONING_PROFILE:-}" ] || cp "$PROVISIONING_PROFILE" "$app/Contents/embedded.provisionprofile"
fi
xattr -cr "$app"  # Finder info or quarantine flags would fail --strict, and vary per machine
codesign --force --deep --options runtime --entitlements "$work/entitlements.plist" \
    -s "$identity" "$app"
codesign --verify --deep --strict --verbose=2 "$app"
for binary in "$app/Contents/MacOS/"*; do
    if ! codesign -d --entitlements :- "$binary" 2>/dev/null \
        | grep "com.apple.security.virtualization" >/dev/null; then
        echo "build-macos-app: error: $binary lacks the virtualization entitlement; hint: codesign -d --entitlements :- $binary" >&2
        exit 1
    fi
done

# File times last (signing writes files; a signature does not cover times), then the zip.
TZ=UTC find "$app" -exec touch -h -t "$(TZ=UTC date -r "$SOURCE_DATE_EPOCH" +%Y%m%d%H%M.%S)" {} +
zip=dist/$("$python" "$tool" zip-name "$arch")
rm -f "$zip"
ditto -c -k --keepParent --norsrc --noextattr --noacl "$app" "$zip"
sha=$(shasum -a 256 "$zip" | cut -d' ' -f1)
echo "build-macos-app: $app (signed: ${identity/#-/ad hoc}, $(basename "$entitlements"))"
echo "build-macos-app: $zip (sha256 $sha)"
if [ "$arch" = arm64 ]; then
    "$python" "$tool" cask "$sha" dist/vmdesk.rb
    echo "build-macos-app: dist/vmdesk.rb (the cask, its sha256 filled in)"
else
    echo "build-macos-app: no cask: packaging/macos/vmdesk.rb offers arm64 only (this is $arch)"
fi
