"""A recording stand-in for the PyObjC ``Virtualization``/``Foundation`` namespace.

Tests hand it to :func:`vmdesk.engines.vz.translate.translate` in place of the real modules.
Every class, selector and constant used through it must be on the checked-in API surface
(:mod:`vmdesk.engines.vz.api_surface`) and exist on the fake host's macOS version; anything
else raises :class:`NotOnSurface` (an AssertionError, so ``hasattr`` does not swallow it).
What was built is kept as a tree of :class:`FakeObject` and rendered as text for golden files.
It mimics PyObjC's calling conventions: ``Class.alloc().initX_(...)``, class properties
called as methods, and out-parameters (``..._error_``) passed as None and returned as
``(result, error)`` tuples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vmdesk.engines.vz import api_surface


class NotOnSurface(AssertionError):
    """The engine used a name the API-surface list does not have (or this macOS lacks)."""


class FakeError:
    """An NSError, enough of it: the engine reads ``localizedDescription()``."""

    def __init__(self, fw: FakeFramework, text: str) -> None:
        self._fw = fw
        self._text = text

    def localizedDescription(self) -> str:
        self._fw.check("NSError.localizedDescription")
        return self._text


class FakeObject:
    """An instance: its class, how it was made, and every call made on it."""

    def __init__(self, fw: FakeFramework, cls: str) -> None:
        self._fw = fw
        self._cls = cls
        self._ctor: tuple[str, tuple[Any, ...]] | None = None
        self._calls: list[tuple[str, tuple[Any, ...]]] = []
        self._children: dict[str, FakeObject] = {}
        self.fake_visible = False  # an NSWindow: ordered front and not closed since

    @property
    def fake_class(self) -> str:
        return self._cls

    @property
    def fake_calls(self) -> list[tuple[str, tuple[Any, ...]]]:
        return list(self._calls)

    def fake_setting(self, selector: str) -> Any:
        """The argument of the last ``selector`` call (e.g. ``setCPUCount_``)."""
        for name, args in reversed(self._calls):
            if name == selector:
                return args[0] if len(args) == 1 else args
        raise KeyError(selector)

    def __getattr__(self, selector: str) -> Callable[..., Any]:
        if selector.startswith("_"):
            raise AttributeError(selector)
        fw = self._fw
        fw.check(f"{self._cls}.{selector}")

        def call(*args: Any) -> Any:
            special = fw.responses.get(f"{self._cls}.{selector}")
            if selector == "init" or selector.startswith("init"):
                if self._ctor is not None:
                    raise NotOnSurface(f"{self._cls} initialised twice")
                self._ctor = (selector, _strip_out(selector, args))
                if special is not None:
                    result = special(self, *args)
                    if result is not self:
                        return result
                return (self, None) if _out_error(selector) else self
            if special is not None:
                return special(self, *args)
            if selector.startswith("set"):
                self._calls.append((selector, args))
                return None
            if _out_error(selector):
                self._calls.append((selector, _strip_out(selector, args)))
                return (True, None)
            child = self._children.get(selector)
            if child is None:  # a getter returning an object the engine then changes
                child = FakeObject(fw, fw.returns.get(f"{self._cls}.{selector}", "NSObject"))
                child._ctor = (selector, ())
                self._children[selector] = child
                self._calls.append((selector, ()))
            return child

        return call


def _out_error(selector: str) -> bool:
    """Whether the selector's last argument is an ``NSError **`` out-parameter."""
    return selector.lower().endswith("error_")


def _strip_out(selector: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """PyObjC out-parameters are passed as None; check that and leave them out."""
    if _out_error(selector):
        if not args or args[-1] is not None:
            raise NotOnSurface(f"{selector}: pass None for the error out-parameter")
        return args[:-1]
    return args


class FakeClass:
    def __init__(self, fw: FakeFramework, name: str) -> None:
        self._fw = fw
        self._name = name

    def alloc(self) -> FakeObject:
        return FakeObject(self._fw, self._name)

    def __getattr__(self, selector: str) -> Callable[..., Any]:
        if selector.startswith("_"):
            raise AttributeError(selector)
        key = f"{self._name}.{selector}"
        self._fw.check(key)

        def call(*args: Any) -> Any:
            if key not in self._fw.responses:
                raise NotOnSurface(f"the fake has no answer for class method {key}")
            made = self._fw.responses[key](None, *args)
            if isinstance(made, FakeObject) and made._ctor is None:
                made._ctor = (f"+{selector}", tuple(args))
            return made

        return call


class FakeFramework:
    """The fake namespace for one fake host (macOS version, CPU limits, interfaces)."""

    def __init__(
        self,
        macos: tuple[int, int] = (14, 0),
        *,
        cpus: tuple[int, int] = (1, 10),
        memory: tuple[int, int] = (128 << 20, 32 << 30),
        interfaces: tuple[str, ...] = ("en0",),
    ) -> None:
        self.macos = macos
        self.used: set[str] = set()
        self.validation_error: str | None = None
        self.invalid_tags: set[str] = set()
        self.stored_machine_ids: list[bytes] = []
        self.returns = {"VZVirtioConsoleDeviceConfiguration.ports":
                        "VZVirtioConsolePortConfigurationArray"}  # fmt: skip
        self.responses: dict[str, Callable[..., Any]] = {
            "VZVirtualMachineConfiguration.minimumAllowedCPUCount": lambda _: cpus[0],
            "VZVirtualMachineConfiguration.maximumAllowedCPUCount": lambda _: cpus[1],
            "VZVirtualMachineConfiguration.minimumAllowedMemorySize": lambda _: memory[0],
            "VZVirtualMachineConfiguration.maximumAllowedMemorySize": lambda _: memory[1],
            "VZSpiceAgentPortAttachment.spiceAgentPortName": lambda _: "com.redhat.spice.0",
            "VZBridgedNetworkInterface.networkInterfaces": lambda _: [
                self._interface(name) for name in interfaces
            ],
            "NSURL.fileURLWithPath_": lambda _, path: self._url(path),
            "VZGenericMachineIdentifier.dataRepresentation": lambda obj: self._machine_id(obj),
            "VZGenericMachineIdentifier.initWithDataRepresentation_": self._load_machine_id,
            "VZVirtualMachineConfiguration.validateWithError_": self._validate,
            "VZVirtioFileSystemDeviceConfiguration.validateTag_error_": self._validate_tag,
            # the window and the main run loop (vz/window.py)
            "NSApplication.sharedApplication": lambda _: self._single("NSApplication"),
            "NSRunLoop.mainRunLoop": lambda _: self._single("NSRunLoop"),
            "NSDate.date": lambda _: self._single("NSDate", "+date"),
            "NSDate.distantPast": lambda _: self._single("NSDate.past", "+distantPast"),
            "NSRunLoop.runMode_beforeDate_": self._run_loop_turn,
            "NSApplication.nextEventMatchingMask_untilDate_inMode_dequeue_": self._next_event,
            "NSWindow.isVisible": lambda obj: obj.fake_visible,
            "NSWindow.makeKeyAndOrderFront_": self._shown(True),
            "NSWindow.close": self._shown(False),
        }
        for action in ("NSApplication.finishLaunching", "NSApplication.activateIgnoringOtherApps_",
                       "NSApplication.sendEvent_", "NSApplication.updateWindows",
                       "NSWindow.center", "NSWindow.makeFirstResponder_"):  # fmt: skip
            self.responses[action] = _recorded(action.split(".")[1])
        self._singletons: dict[str, FakeObject] = {}
        self.events: list[Any] = []  # what the fake NSApplication hands out as events
        self.run_loop_turns: list[Callable[[], None]] = []  # called on each run-loop turn

    # -- the surface check ----------------------------------------------------------------

    def check(self, name: str) -> None:
        if name in api_surface.SURFACE:
            api = api_surface.SURFACE[name]
        elif name in api_surface.STATES:
            api = api_surface.STATES[name][1]
        elif name in api_surface.CONSTANTS:
            api = api_surface.CONSTANTS[name][1]
        else:
            raise NotOnSurface(f"{name} is not on the checked-in API surface (api_surface.py)")
        if api.since > self.macos:
            wanted = api_surface.version_text(api.since)
            raise AttributeError(f"{name} needs macOS {wanted}")
        self.used.add(name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        self.check(name)
        if name in api_surface.STATES:
            return api_surface.STATES[name][0]
        if name in api_surface.CONSTANTS:
            return api_surface.CONSTANTS[name][0]
        if name.startswith(("VZDiskImageCachingMode", "VZDiskImageSynchronizationMode")):
            return name  # enum values: rendered by name in the golden files
        return FakeClass(self, name)

    # -- canned answers ---------------------------------------------------------------------

    def _url(self, path: str) -> FakeObject:
        url = FakeObject(self, "NSURL")
        url._ctor = ("+fileURLWithPath_", (path,))
        return url

    def _single(self, key: str, ctor: str | None = None) -> FakeObject:
        """The one shared instance (``NSApp``, the main run loop...)."""
        if key not in self._singletons:
            made = FakeObject(self, key.split(".")[0])
            made._ctor = (ctor or f"+{_SHARED[key]}", ())
            self._singletons[key] = made
        return self._singletons[key]

    def _run_loop_turn(self, obj: FakeObject, mode: str, date: Any) -> bool:
        for turn in list(self.run_loop_turns):
            turn()
        return True

    def _next_event(self, obj: FakeObject, mask: int, date: Any, mode: str, dequeue: bool) -> Any:
        if not self.events:
            return None
        return self.events.pop(0) if dequeue else self.events[0]

    def _shown(self, visible: bool) -> Callable[..., None]:
        def call(obj: FakeObject, *args: Any) -> None:
            obj.fake_visible = visible
            obj._calls.append(("makeKeyAndOrderFront_" if visible else "close", args))

        return call

    def _interface(self, name: str) -> FakeObject:
        iface = FakeObject(self, "VZBridgedNetworkInterface")
        iface._ctor = ("+networkInterfaces[]", (name,))
        self.responses.setdefault("VZBridgedNetworkInterface.identifier", _identifier)
        return iface

    def _machine_id(self, obj: FakeObject) -> bytes:
        ctor = obj._ctor
        if ctor is not None and ctor[0] == "initWithDataRepresentation_":
            return bytes(ctor[1][0])
        return b"fake-machine-identifier"

    def _load_machine_id(self, obj: FakeObject, data: bytes) -> FakeObject | None:
        return obj if data.startswith(b"fake-") else None  # nil for data it cannot read

    def _validate(self, obj: FakeObject, out: None) -> tuple[bool, FakeError | None]:
        obj._calls.append(("validateWithError_", ()))
        if self.validation_error is not None:
            return False, FakeError(self, self.validation_error)
        return True, None

    def _validate_tag(self, _: Any, tag: str, out: None) -> tuple[bool, FakeError | None]:
        if tag in self.invalid_tags:
            return False, FakeError(self, f"invalid tag {tag!r}")
        return True, None


_SHARED = {"NSApplication": "sharedApplication", "NSRunLoop": "mainRunLoop"}


def _recorded(selector: str) -> Callable[..., None]:
    """An action (no result): recorded with its arguments, for the golden files."""

    def call(obj: FakeObject, *args: Any) -> None:
        obj._calls.append((selector, args))

    return call


def _identifier(obj: FakeObject) -> str:
    assert obj._ctor is not None
    return str(obj._ctor[1][0])


# -- rendering ---------------------------------------------------------------------------


def render(value: Any, indent: int = 0) -> list[str]:
    """The recorded object graph as indented text lines (one golden file per VM)."""
    pad = "  " * indent
    if isinstance(value, FakeObject):
        ctor = value._ctor
        name, args = ctor if ctor is not None else ("alloc", ())
        head = f"{pad}{value._cls}.{name}"
        lines: list[str] = []
        inline = [a for a in args if not isinstance(a, FakeObject | list | tuple)]
        if len(inline) == len(args):
            lines.append(f"{head}({', '.join(_scalar(a) for a in args)})")
        else:
            lines.append(f"{head}(")
            for arg in args:
                lines += render(arg, indent + 2)
            lines.append(f"{pad})")
        for selector, call_args in value._calls:
            if selector in value._children:
                lines.append(f"{pad}  .{selector}() ->")
                lines += [line for line in render(value._children[selector], indent + 2)[1:]]
                continue
            if all(not isinstance(a, FakeObject | list | tuple) for a in call_args):
                lines.append(f"{pad}  .{selector}({', '.join(_scalar(a) for a in call_args)})")
                continue
            lines.append(f"{pad}  .{selector}(")
            for arg in call_args:
                lines += render(arg, indent + 2)
            lines.append(f"{pad}  )")
        return lines
    if isinstance(value, list | tuple):
        if not value:
            return [f"{pad}[]"]
        lines = [f"{pad}["]
        for item in value:
            lines += render(item, indent + 1)
        lines.append(f"{pad}]")
        return lines
    return [f"{pad}{_scalar(value)}"]


def _scalar(value: Any) -> str:
    if isinstance(value, bytes):
        return f"bytes({len(value)})"
    return repr(value)
