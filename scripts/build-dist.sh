#!/usr/bin/env bash
# The wheel and sdist of VM-Desk (for `pipx install` or `pip install`), into DIR (default
# dist/). Both carry the web UI's browser libraries (noVNC, xterm.js), installed by npm
# from the lockfile first, so an install needs neither npm nor network beyond PyPI.
# Reproducible: file times are the last commit's (SOURCE_DATE_EPOCH).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist}")
bash scripts/setup.sh >/dev/null  # the venv (with `build`) and the vendored libraries
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 315532800)
export SOURCE_DATE_EPOCH
rm -rf build src/vmdesk.egg-info
.venv/bin/python -m build --sdist --wheel --outdir "$out" . >/dev/null
# The sdist made byte-for-byte reproducible (setuptools stamps it with the build's time):
# members sorted, owned by root, dated SOURCE_DATE_EPOCH, in a gzip stream dated 0. Then
# what both must carry: the vendored libraries and the image catalog.
.venv/bin/python - "$out" <<'PY'
import gzip
import io
import os
import sys
import tarfile
import zipfile
from pathlib import Path

out = Path(sys.argv[1])
epoch = int(os.environ["SOURCE_DATE_EPOCH"])
for sdist in out.glob("vmdesk-*.tar.gz"):
    with tarfile.open(sdist) as source:
        members = sorted(source.getmembers(), key=lambda m: m.name)
        packed = io.BytesIO()
        with tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for member in members:
                data = source.extractfile(member) if member.isfile() else None
                member.mtime, member.uid, member.gid = epoch, 0, 0
                member.uname = member.gname = "root"
                member.pax_headers = {}
                tar.addfile(member, data)
    with sdist.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped:
        zipped.write(packed.getvalue())
needed = ("vmdesk/web/static/vendor/novnc/", "vmdesk/web/static/vendor/xterm/",
          "vmdesk/images/catalog.json")
for archive in sorted(out.glob("vmdesk-*")):
    if archive.suffix == ".whl":
        names = zipfile.ZipFile(archive).namelist()
    else:
        names = tarfile.open(archive).getnames()
    missing = [n for n in needed if not any(n in name for name in names)]
    if missing:
        sys.exit(f"build-dist: {archive.name} lacks {missing}")
    print(f"build-dist: {archive}")
PY
