"""The VM's screen in a native macOS window (``VZVirtualMachineView``), and the main run loop
that keeps it (and the VM) going inside the supervisor.

Why the main queue: the view is an AppKit ``NSView``, used on the main thread only, and
Apple documents that every call to a ``VZVirtualMachine`` happens on the queue it was
created with (``init(configuration:queue:)``; ``init(configuration:)`` means the main
queue). Nothing documents that a view may be handed a VM that lives on another queue (the
``VZVirtualMachineViewAdaptor`` that bridges the two is new in macOS 26+), and Apple's
GUI Linux sample keeps its VM on the main queue. So a vz VM with a display is created on the
main queue, and the supervisor, whose main thread runs asyncio, pumps the main run loop
(:func:`pump`) from a task of its loop: that runs the VM's work items and completion
handlers, and AppKit's events once a window exists.

Pure over ``fw`` (AppKit, Foundation and Virtualization merged; the recording fake in
tests), like :mod:`vmdesk.engines.vz.translate`; nothing here has run on a Mac yet.
"""

from __future__ import annotations

from typing import Any

MAX_SIZE = (1440, 900)  # the largest first window (points); the view scales the screen
EVENTS_PER_PUMP = 64  # AppKit events handled per pump, so asyncio gets its turn


def content_size(width: int, height: int) -> tuple[int, int]:
    """The window's first size: the guest's, shrunk (keeping its shape) to fit MAX_SIZE."""
    scale = min(1.0, MAX_SIZE[0] / width, MAX_SIZE[1] / height)
    return round(width * scale), round(height * scale)


def open_window(fw: Any, vm: Any, title: str, width: int, height: int) -> tuple[Any, Any]:
    """Show ``vm``'s screen in a new window; returns (the application, the window).

    Runs on the main thread, which is the VM's queue. Closing the window only hides it
    (it is not released), so the VM runs on and :func:`show_again` brings it back."""
    app = fw.NSApplication.sharedApplication()
    app.setActivationPolicy_(fw.NSApplicationActivationPolicyRegular)  # a Dock icon, focus
    app.finishLaunching()  # what NSApplication.run would do first; the pump replaces run
    view = fw.VZVirtualMachineView.alloc().init()
    view.setVirtualMachine_(vm)
    view.setCapturesSystemKeys_(True)  # Cmd-Tab, Cmd-Q... go to the guest while focused
    style = (
        fw.NSWindowStyleMaskTitled
        | fw.NSWindowStyleMaskClosable
        | fw.NSWindowStyleMaskMiniaturizable
        | fw.NSWindowStyleMaskResizable
    )
    points = content_size(width, height)
    window = fw.NSWindow.alloc().initWithContentRect_styleMask_backing_defer_(
        ((0.0, 0.0), (float(points[0]), float(points[1]))),
        style,
        fw.NSBackingStoreBuffered,
        False,
    )
    window.setReleasedWhenClosed_(False)
    window.setTitle_(title)
    window.setContentView_(view)
    window.makeFirstResponder_(view)  # keys and the pointer go to the guest
    window.center()
    window.makeKeyAndOrderFront_(None)
    app.activateIgnoringOtherApps_(True)
    return app, window


def show_again(app: Any, window: Any) -> bool:
    """Bring an open window to the front; False if the user closed it (then it is shown
    again too, as it was: closing only hides it)."""
    visible = bool(window.isVisible())
    window.makeKeyAndOrderFront_(None)
    app.activateIgnoringOtherApps_(True)
    return visible


def pump(fw: Any, app: Any | None) -> None:
    """One turn of the main run loop without waiting: the main queue's work (the VM's, on
    this thread), timers, then AppKit's pending events when a window exists."""
    mode = fw.NSDefaultRunLoopMode
    fw.NSRunLoop.mainRunLoop().runMode_beforeDate_(mode, fw.NSDate.date())
    if app is None:
        return
    past = fw.NSDate.distantPast()
    for _ in range(EVENTS_PER_PUMP):
        event = app.nextEventMatchingMask_untilDate_inMode_dequeue_(
            fw.NSEventMaskAny, past, mode, True
        )
        if event is None:
            break
        app.sendEvent_(event)
    app.updateWindows()


def close(window: Any) -> None:
    """Close the window for good (the VM has ended)."""
    window.close()
