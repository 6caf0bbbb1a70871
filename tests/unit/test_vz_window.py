"""The vz engine's native window against the recording fake: the window set-up (golden),
the main run loop pumped from asyncio with the VM on the main queue, the supervisor's
`window` request, and `vmdesk display --window` refusing what it cannot do.
(Nothing here touches a real AppKit or Virtualization.framework.)"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests import golden_files
from tests.unit.test_vz_session import FakeRuntime, make
from vmdesk.core.errors import EngineError, Unsupported
from vmdesk.engines.base import Capabilities
from vmdesk.engines.registry import QemuEngine
from vmdesk.engines.vz import api_surface, fake
from vmdesk.engines.vz import capabilities as vz_caps
from vmdesk.engines.vz import window as vz_window
from vmdesk.supervisor.protocol import PROTOCOL_VERSION

DISPLAY = {"display": {"device": "virtio-gpu", "width": 1920, "height": 1080}}


def _vm(fw: fake.FakeFramework) -> fake.FakeObject:
    return fw.VZVirtualMachine.alloc().initWithConfiguration_queue_(  # type: ignore[no-any-return]
        "the configuration", "the main queue"
    )


def test_window_set_up_golden() -> None:
    fw = fake.FakeFramework((13, 0))  # the oldest macOS the engine runs on
    app, window = vz_window.open_window(fw, _vm(fw), "example — VM-Desk", 1920, 1080)
    text = "\n".join([*fake.render(app), *fake.render(window)]) + "\n"
    golden_files.check("vz/window.txt", text)
    assert window.fake_visible
    view = window.fake_setting("setContentView_")
    assert view.fake_class == "VZVirtualMachineView"
    assert view.fake_setting("setCapturesSystemKeys_") is True
    assert view.fake_setting("setVirtualMachine_").fake_class == "VZVirtualMachine"
    used = ("NSWindow.initWithContentRect_styleMask_backing_defer_",
            "VZVirtualMachineView.setVirtualMachine_", "NSWindowStyleMaskResizable")  # fmt: skip
    assert set(used) <= fw.used


def test_the_view_needs_macos_12_and_every_name_is_listed() -> None:
    with pytest.raises(AttributeError, match="VZVirtualMachineView needs macOS 12"):
        vz_window.open_window(fake.FakeFramework((11, 0)), None, "x", 640, 480)
    for name, (_, api) in api_surface.CONSTANTS.items():
        assert api.ref.startswith(("appkit:", "foundation:")), name
        assert api_surface.reference_url(api.ref).startswith("https://developer.apple.com/")


def test_first_size_keeps_the_shape_within_the_limit() -> None:
    assert vz_window.content_size(1280, 800) == (1280, 800)
    assert vz_window.content_size(3840, 2160) == (1440, 810)
    assert vz_window.content_size(1024, 1600) == (576, 900)


def test_pump_runs_the_main_queue_then_appkit_events() -> None:
    fw = fake.FakeFramework()
    ran: list[str] = []
    fw.run_loop_turns.append(lambda: ran.append("main queue"))
    vz_window.pump(fw, None)  # no window yet: only the run loop
    assert ran == ["main queue"] and "NSApplication" not in fw.used
    app, _ = vz_window.open_window(fw, _vm(fw), "x", 640, 480)
    fw.events = ["key down", "mouse moved"]
    vz_window.pump(fw, app)
    assert ran == ["main queue"] * 2 and fw.events == []
    sent = [args for name, args in app.fake_calls if name == "sendEvent_"]
    assert sent == [("key down",), ("mouse moved",)]
    assert app.fake_calls[-1] == ("updateWindows", ())


def test_a_vm_with_a_display_runs_on_the_pumped_main_queue(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    session = make(tmp_path, runtime, **DISPLAY)

    async def run() -> tuple[str, bool, bool, int]:
        session.launch()
        await session.attach()  # the pump runs the VM's creation and start on this thread
        state = await session.status()
        first = await session.open_window()
        session._window.close()  # the user closes the window: the VM runs on
        again = await session.open_window()
        await session.quit()
        code = await session.wait()
        await session.close()
        return state, first, again, code

    state, first, again, code = asyncio.run(run())
    assert state == "running" and code == 0
    assert first is True and again is True  # closed, so opened anew
    assert runtime.vm.threads == {threading.main_thread().name}  # the main queue only
    assert session._pump_task is None and session._window is None
    assert "runs on the main queue" in session.files.engine_log.read_text()
    assert "VZVirtualMachineView.setVirtualMachine_" in runtime.fw.used


def test_an_open_window_is_brought_to_the_front(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    session = make(tmp_path, runtime, **DISPLAY)

    async def run() -> tuple[bool, bool, object]:
        session.launch()
        await session.attach()
        first = await session.open_window()
        again = await session.open_window()
        window = session._window
        await session.quit()
        await session.close()  # the VM ended: its window goes too
        return first, again, window

    first, again, window = asyncio.run(run())
    assert first is True and again is False  # opened, then brought to the front
    assert isinstance(window, fake.FakeObject) and not window.fake_visible
    assert window.fake_calls[-1] == ("close", ())


def test_a_headless_vm_stays_on_its_private_queue_and_has_no_window(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    session = make(tmp_path, runtime)  # display: none

    async def run() -> None:
        session.launch()
        await session.attach()
        assert session._pump_task is None
        try:
            await session.open_window()
        finally:
            await session.quit()
            await session.close()

    with pytest.raises(EngineError, match="has no display") as err:
        asyncio.run(run())
    assert "--display virtio-gpu" in (err.value.hint or "")
    assert "NSApplication" not in runtime.fw.used


def test_no_window_from_a_vm_started_over_ssh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_CONNECTION", "10.0.0.2 50000 10.0.0.1 22")
    runtime = FakeRuntime()
    session = make(tmp_path, runtime, **DISPLAY)

    async def run() -> None:
        session.launch()
        await session.attach()
        try:
            await session.open_window()
        finally:
            await session.quit()
            await session.close()

    with pytest.raises(EngineError, match="SSH session"):
        asyncio.run(run())
    assert "NSApplication" not in runtime.fw.used


def test_the_supervisor_refuses_a_window_for_qemu(tmp_path: Path) -> None:
    from vmdesk.core.bundle import Bundle
    from vmdesk.service import library as service_library
    from vmdesk.service import vms
    from vmdesk.supervisor.daemon import Supervisor

    library = service_library.open(tmp_path / "library")
    config = vms.create(library, {"name": "pc", "arch": "x86_64", "memory": "256MiB"})
    bundle = Bundle(library.path_for("pc"))

    class QemuLike:  # a session without open_window, as QEMU's
        pass

    supervisor = Supervisor(
        bundle, config, QemuLike(), lambda _: None,  # type: ignore[arg-type]
        capabilities=QemuEngine().capabilities(),
    )  # fmt: skip
    try:
        with pytest.raises(Unsupported, match="runs on QEMU") as err:
            asyncio.run(supervisor._window({"op": "window", "version": PROTOCOL_VERSION}))
    finally:
        supervisor.close()
    assert "`vmdesk ui`" in (err.value.hint or "") and "--vnc" in (err.value.hint or "")


def _vmdesk(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vmdesk.cli.main", *args],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
        env={**os.environ, "VMDESK_HOME": str(root), "COLUMNS": "250"},
    )  # fmt: skip


def test_display_window_command_refusals_and_resolution(tmp_path: Path) -> None:
    root = tmp_path / "library"
    for name, engine in (("pc", "auto"), ("mac", "vz")):
        made = _vmdesk(
            root, "create", name, "--engine", engine, "--arch", "aarch64", "--memory", "256MiB"
        )
        assert made.returncode == 0, made.stderr

    qemu = _vmdesk(root, "display", "pc", "--window")
    assert qemu.returncode != 0 and "Traceback" not in qemu.stderr
    if sys.platform != "darwin":  # on Linux `auto` is QEMU
        assert "runs on QEMU, which shows its screen over VNC" in qemu.stderr
        assert "hint: start it (`vmdesk start pc`), then open its console" in qemu.stderr

    stopped = _vmdesk(root, "display", "mac", "--window")
    assert stopped.returncode != 0 and "Traceback" not in stopped.stderr
    assert "VM 'mac' is stopped: its window shows a running VM" in stopped.stderr
    assert "hint: start it first: `vmdesk start mac`, then `vmdesk display mac --window`" in (
        stopped.stderr
    )

    nothing = _vmdesk(root, "display", "pc")
    assert nothing.returncode == 2 and "give --resolution WIDTHxHEIGHT, --window" in nothing.stderr
    resized = _vmdesk(root, "display", "pc", "--resolution", "1024x768")
    assert resized.returncode == 0 and "display set to 1024x768" in resized.stdout


def test_the_window_request_over_the_control_socket(tmp_path: Path) -> None:
    """What `vmdesk display --window` sends, answered by the supervisor's control server:
    a session that can open a window, and one (QEMU's) that cannot."""
    from vmdesk.core.bundle import Bundle
    from vmdesk.service import library as service_library
    from vmdesk.service import vms
    from vmdesk.supervisor import status as vmstatus
    from vmdesk.supervisor.daemon import Supervisor

    library = service_library.open(tmp_path / "library")
    config = vms.create(library, {"name": "pc", "arch": "x86_64", "memory": "256MiB"})
    bundle = Bundle(library.path_for("pc"))

    class Windowed:
        async def open_window(self) -> bool:
            return True

    class QemuLike:
        pass

    vz = vz_caps.capabilities(vz_caps.HostFacts("darwin", "arm64", (14, 0)))

    async def ask(session: object, caps: Capabilities) -> dict[str, object]:
        supervisor = Supervisor(
            bundle, config, session, lambda _: None,  # type: ignore[arg-type]
            capabilities=caps,
        )  # fmt: skip
        path = tmp_path / f"control-{type(session).__name__}"
        server = await asyncio.start_unix_server(supervisor._control_client, str(path))
        try:
            return await asyncio.to_thread(vmstatus.request, path, "window", timeout=10)
        finally:
            server.close()
            supervisor.close()

    assert asyncio.run(ask(Windowed(), vz)) == {"window": "opened", "ok": True}
    refused = asyncio.run(ask(QemuLike(), QemuEngine().capabilities()))
    assert refused["ok"] is False and "runs on QEMU" in str(refused["error"])
    assert refused["kind"] == "Unsupported"
    assert "`vmdesk ui`" in str(refused["hint"])
