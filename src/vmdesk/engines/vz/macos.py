"""The real runtime on macOS: PyObjC's modules, a private dispatch queue, the VM delegate.

Imported only on a Mac with ``vmdesk[macos]`` installed; nothing here runs on Linux, and
none of it has been run on a Mac yet (see docs/macos-test-plan.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from vmdesk.engines.vz.session import guarded


class _Namespace:
    """``Virtualization``, then ``Foundation``, then ``AppKit`` (the native window): the
    ``fw`` the translation, the session and the window use."""

    def __init__(self, *modules: Any) -> None:
        self._modules = modules

    def __getattr__(self, name: str) -> Any:
        for module in self._modules:
            try:
                return getattr(module, name)
            except AttributeError:
                continue
        raise AttributeError(name)


_DELEGATE: Any = None


def _delegate_class() -> Any:
    global _DELEGATE
    if _DELEGATE is None:
        objc = importlib.import_module("objc")
        foundation = importlib.import_module("Foundation")
        protocol = objc.protocolNamed("VZVirtualMachineDelegate")

        base: Any = foundation.NSObject

        class VMDeskVirtualMachineDelegate(base, protocols=[protocol]):  # type: ignore[misc,call-arg]
            def guestDidStopVirtualMachine_(self, vm: Any) -> None:
                guarded(lambda: self.on_guest_stop())()

            def virtualMachine_didStopWithError_(self, vm: Any, error: Any) -> None:
                guarded(lambda: self.on_error(error))()

        _DELEGATE = VMDeskVirtualMachineDelegate
    return _DELEGATE


class MacRuntime:
    def __init__(self) -> None:
        self.fw = _Namespace(
            importlib.import_module("Virtualization"),
            importlib.import_module("Foundation"),
            importlib.import_module("AppKit"),  # pyobjc-framework-Cocoa, which PyObjC's
        )  # Virtualization bindings depend on
        self._dispatch = importlib.import_module("libdispatch")

    def queue(self) -> Any:
        """A private serial queue: the VM is created on it, and every call to it runs there."""
        return self._dispatch.dispatch_queue_create(b"org.vmdesk.vz", None)

    def main_queue(self) -> Any:
        """The main queue, for a VM with a display: its window must be on the main thread,
        and the VM on the same queue as the view (see window.py); the session pumps it."""
        return self._dispatch.dispatch_get_main_queue()

    def dispatch(self, queue: Any, work: Callable[[], None]) -> None:
        self._dispatch.dispatch_async(queue, work)

    def delegate(self, on_guest_stop: Callable[[], None], on_error: Callable[[Any], None]) -> Any:
        delegate = _delegate_class().alloc().init()
        delegate.on_guest_stop = guarded(on_guest_stop)
        delegate.on_error = guarded(on_error)
        return delegate


def load() -> MacRuntime:
    return MacRuntime()
