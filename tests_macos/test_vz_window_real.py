"""The native window against the real AppKit and Virtualization.framework (macOS only;
skipped elsewhere. Run from a terminal on the Mac's desktop, not over SSH: see
docs/macos-test-plan.md). A window appears for a moment."""

from __future__ import annotations

import time
from pathlib import Path

from vmdesk.core.config import from_dict
from vmdesk.engines.vz import api_surface, macos
from vmdesk.engines.vz import window as vz_window
from vmdesk.engines.vz.capabilities import current_host
from vmdesk.engines.vz.translate import Inputs, translate


def test_window_constants_match_appkit() -> None:
    fw = macos.load().fw
    for name, (value, _) in api_surface.CONSTANTS.items():
        assert getattr(fw, name) == value, name


def test_window_shows_a_vm_created_on_the_main_queue(tmp_path: Path) -> None:
    """The set-up the supervisor does: the VM on the main queue, the view and the window on
    the main thread (pytest's), the main run loop pumped by hand. The VM is not started:
    the view is handed a VM it shows once it runs."""
    runtime = macos.load()
    fw = runtime.fw
    (tmp_path / "nvram").mkdir()
    (tmp_path / "Image").write_bytes(b"\0" * 4096)  # validation wants the file to exist
    config = from_dict({
        "name": "window-test", "engine": "vz", "cpus": 1, "memory": "512MiB",
        "boot": {"kind": "linux", "kernel": str(tmp_path / "Image")},
        "display": {"device": "virtio-gpu", "width": 1280, "height": 800},
    })  # fmt: skip
    configuration = translate(config, tmp_path, fw, current_host(), Inputs()).configuration
    made: list[object] = []

    def create() -> None:  # on the main queue, as the session does
        made.append(
            fw.VZVirtualMachine.alloc().initWithConfiguration_queue_(
                configuration, runtime.main_queue()
            )
        )

    runtime.dispatch(runtime.main_queue(), create)
    deadline = time.monotonic() + 5
    while not made and time.monotonic() < deadline:
        vz_window.pump(fw, None)  # the main run loop drains the main queue
    assert made, "the main queue was not drained by a turn of the main run loop"
    vm = made[0]

    app, window = vz_window.open_window(fw, vm, "vmdesk window test", 1280, 800)
    for _ in range(50):  # half a second of events
        vz_window.pump(fw, app)
        time.sleep(0.01)
    assert window.isVisible()
    view = window.contentView()
    assert view.isKindOfClass_(fw.VZVirtualMachineView)
    assert view.virtualMachine() is vm or view.virtualMachine() == vm
    assert view.capturesSystemKeys()
    assert vz_window.show_again(app, window)  # already open: brought to the front
    vz_window.close(window)
    vz_window.pump(fw, app)
    assert not window.isVisible()
