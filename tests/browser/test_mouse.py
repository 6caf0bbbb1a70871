"""The mouse on the noVNC display reaches the guest: moves and a click on the console page's
canvas arrive at the guest's absolute pointer (QEMU's USB tablet) as input events, at the
screen positions the mouse was on. Checked inside the guest, by reading the raw events of
the pointer's /dev/input/eventN while the page drives the mouse."""

from __future__ import annotations

import re
import struct
import time
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import UI, GuestShell, PageErrors, Shot
from tests.browser.test_pages import no_page_errors

pytestmark = pytest.mark.vm

NAME = "pointer"
WIDTH, HEIGHT = 1024, 768
TIMES = "\N{MULTIPLICATION SIGN}"
# QEMU scales the VNC client's pixel position to its absolute axes, 0..0x7fff over the
# whole screen (the USB tablet's logical range).
ABS_RANGE = 0x8000
# A pixel of the guest's screen is 32 units on the axis. The browser reports the mouse in
# whole CSS pixels, each more than one of the guest's on a canvas scaled down to fit, and
# noVNC and QEMU round down: allow a few pixels, nothing like a wrong scale or a lost axis.
SLACK_PIXELS = 3

# struct input_event on a 64-bit guest: struct timeval, then type, code and value.
EVENT = struct.Struct("<qqHHi")
EV_SYN, EV_KEY, EV_ABS = 0, 1, 3
SYN_REPORT = 0
ABS_X, ABS_Y = 0, 1
BTN_LEFT = 0x110


@dataclass
class Frame:
    """The pointer's state at one SYN_REPORT: where it was, and the buttons that changed."""

    x: int | None
    y: int | None
    buttons: dict[int, int]


def pointer_event_node(devices: str) -> str:
    """The event node (``event2``) of the input device with absolute X/Y axes and a left
    button, from the text of /proc/bus/input/devices."""
    for block in devices.strip().split("\n\n"):
        bits = dict(re.findall(r"^B: (\w+)=(.*)$", block, re.MULTILINE))
        handlers = re.search(r"^H: Handlers=.*\b(event\d+)\b", block, re.MULTILINE)
        if "ABS" not in bits or "KEY" not in bits or handlers is None:
            continue
        abs_bits = int(bits["ABS"].split()[-1], 16)  # the lowest word holds ABS_X, ABS_Y
        key_words = [int(word, 16) for word in reversed(bits["KEY"].split())]
        word, bit = divmod(BTN_LEFT, 64)  # words are unsigned longs, lowest last
        has_left = len(key_words) > word and key_words[word] >> bit & 1
        if abs_bits & 0b11 == 0b11 and has_left:
            return handlers.group(1)
    raise AssertionError(f"the guest has no absolute pointer with a left button:\n{devices}")


def parse_frames(dump: str) -> list[Frame]:
    """The frames in ``od -An -v -tx1`` output of raw input events."""
    raw = bytes.fromhex("".join(dump.split()))
    frames: list[Frame] = []
    x: int | None = None
    y: int | None = None
    buttons: dict[int, int] = {}
    for offset in range(0, len(raw) - len(raw) % EVENT.size, EVENT.size):
        _sec, _usec, kind, code, value = EVENT.unpack_from(raw, offset)
        if kind == EV_ABS and code == ABS_X:
            x = value
        elif kind == EV_ABS and code == ABS_Y:
            y = value
        elif kind == EV_KEY:
            buttons[code] = value
        elif kind == EV_SYN and code == SYN_REPORT:
            frames.append(Frame(x, y, buttons))
            buttons = {}
    return frames


def to_pixels(frame: Frame) -> tuple[float, float]:
    assert frame.x is not None and frame.y is not None, f"no absolute position yet: {frame}"
    return frame.x * WIDTH / ABS_RANGE, frame.y * HEIGHT / ABS_RANGE


def near(frame: Frame, pixel: tuple[int, int]) -> bool:
    if frame.x is None or frame.y is None:
        return False
    x, y = to_pixels(frame)
    return abs(x - pixel[0]) <= SLACK_PIXELS and abs(y - pixel[1]) <= SLACK_PIXELS


def move_to(page: Page, pixel: tuple[int, int]) -> None:
    """Put the mouse over the centre of the guest's screen pixel ``pixel``, wherever the
    page has laid out (and scaled) noVNC's canvas."""
    box = page.evaluate(
        """() => {
          const canvas = document.querySelector('#vnc-screen canvas');
          const r = canvas.getBoundingClientRect();
          return {left: r.left, top: r.top, width: r.width, height: r.height,
                  fbWidth: canvas.width, fbHeight: canvas.height};
        }"""
    )
    assert (box["fbWidth"], box["fbHeight"]) == (WIDTH, HEIGHT), box
    page.mouse.move(
        box["left"] + (pixel[0] + 0.5) * box["width"] / WIDTH,
        box["top"] + (pixel[1] + 0.5) * box["height"] / HEIGHT,
    )


def test_mouse_moves_and_clicks_reach_the_guest(
    page: Page, ui: UI, shot: Shot, page_errors: PageErrors
) -> None:
    ui.cli("create", NAME, "--image", "tiny-linux", "--arch", "x86_64",
           "--resolution", f"{WIDTH}x{HEIGHT}", timeout=300)  # fmt: skip
    ui.cli("start", NAME, "--wait-ready", timeout=180)
    guest = GuestShell(ui.home / f"{NAME}.vmdesk")
    try:
        node = pointer_event_node(guest.run("cat /proc/bus/input/devices"))

        page.goto(f"{ui.base}/vms/{NAME}/console")
        expect(page.locator("#vnc-state")).to_have_attribute("data-state", "connected")
        expect(page.locator("#vnc-resolution")).to_have_text(f"{WIDTH} {TIMES} {HEIGHT}")
        guest.run("echo 'VM-Desk: move the mouse' > /dev/tty1")
        shot("display-connected")

        # Record the pointer's raw events from now on.
        guest.run(f"(cat /dev/input/{node} > /tmp/pointer &)")
        guest.run("sleep 1")  # the reader is waiting on the device
        hover, click = (256, 576), (768, 192)  # lower left, then upper right
        move_to(page, hover)
        page.wait_for_timeout(500)
        shot("mouse-moved")
        move_to(page, click)
        page.wait_for_timeout(500)
        page.mouse.down()
        page.wait_for_timeout(200)
        page.mouse.up()

        # The guest may lag behind under emulation: wait for the button's release.
        deadline = time.monotonic() + 20
        while True:
            frames = parse_frames(guest.run("od -An -v -tx1 /tmp/pointer"))
            if any(f.buttons.get(BTN_LEFT) == 0 for f in frames):
                break
            assert time.monotonic() < deadline, f"no left-button release in {frames}"
            time.sleep(1)

        assert any(near(f, hover) for f in frames), f"never at {hover}: {frames}"
        presses = [i for i, f in enumerate(frames) if f.buttons.get(BTN_LEFT) == 1]
        assert presses, f"no left-button press: {frames}"
        pressed = frames[presses[0]]
        assert near(pressed, click), f"pressed at {to_pixels(pressed)}, not {click}: {frames}"
        released = [f for f in frames[presses[0] + 1 :] if f.buttons.get(BTN_LEFT) == 0]
        assert released, f"the button was not released after its press: {frames}"
        assert near(released[0], click), f"released at {to_pixels(released[0])}: {frames}"
        assert frames.index(next(f for f in frames if near(f, hover))) < presses[0]

        # Show on the guest's screen what it received, for the screenshot.
        for what, frame in (("pointer at", frames[0]), ("left click at", pressed)):
            x, y = to_pixels(frame)
            guest.run(f"echo 'guest: {what} {x:.0f},{y:.0f}' > /dev/tty1")
        page.wait_for_timeout(1000)
        shot("mouse-clicked")
    finally:
        guest.close()
    no_page_errors(page_errors)
