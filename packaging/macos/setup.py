"""py2app's build of VM-Desk.app; run by scripts/build-macos-app.sh (in its build venv) as
`python setup.py py2app --dist-dir DIST --bdist-base BUILD`, with VMDESK_ICNS the icon.

Why py2app, not Briefcase:
- The vz engine starts each VM's supervisor as a new Python (`sys.executable -m
  vmdesk.supervisor`: Apple's frameworks are not safe in a forked child). A py2app bundle
  has a real interpreter, Contents/MacOS/python, as sys.executable; a Briefcase app's
  executable is a stub that always runs the app, so `-m` would start a second app.
- It is PyObjC's own packager (same maintainer), with recipes for PyObjC's frameworks
  (Virtualization, Cocoa, libdispatch: the `macos` extra) and for pywebview (the `app`
  extra), whose docs name it for macOS.
- It embeds the framework Python it runs under (a python.org build), so the app needs no
  Python of the Mac's.
- `packages` copies each package as a folder, so the web UI's static files (package data in
  the wheel, read from vmdesk/web/static next to the code) are there as files.
- Its configuration is this file: pyproject.toml stays as it is (Briefcase wants a
  [tool.briefcase] table there), and signing stays in the script, with our entitlements.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup

sys.path.insert(0, str(Path(__file__).resolve().parent))
import buildtool  # beside this file

packages, modules = buildtool.bundled_packages()
setup(
    name=buildtool.APP_NAME,
    version=buildtool.version(),
    app=["vmdesk_app.py"],
    py_modules=[],  # no discovery: this folder's other files are build tools, not the app
    packages=[],
    options={
        "py2app": {
            "plist": buildtool.info_plist(buildtool.version()),
            "iconfile": os.environ["VMDESK_ICNS"],
            # Whole: VM-Desk imports its commands and engines, PyObjC frameworks and
            # pywebview's backend by name, which py2app's import scan cannot see.
            "packages": packages,
            "includes": modules,
            # Carbon's Apple-event emulation is deprecated and would take the events (opened
            # files, URLs) that belong to the app's own run loop.
            "argv_emulation": False,
            "site_packages": False,
            "semi_standalone": False,  # the framework Python goes into the bundle
        }
    },
)
