"""The pages and a real desktop guest's agents (the debian-desktop image, x86_64, under
TCG): the VM page shows the agents as they come and what the guest agent says of the
guest; on the console page the browser's clipboard reaches the guest's (Paste to guest),
the guest's copy reaches the browser's (a notice, then Copy from guest: text and a PNG),
and the guest's display follows the console's box when the window is resized. What the
guest has is checked inside it, through its agent (`vmdesk exec`). And with a tiny guest,
which runs no agents: the controls say so."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.agents_report import agents_report
from tests.browser.conftest import UI, PageErrors, Shot
from tests.browser.test_pages import no_page_errors
from vmdesk.core.arch import Arch
from vmdesk.images import desktop

pytestmark = [pytest.mark.vm, pytest.mark.timeout(900)]

NAME = "desk"
# The session's X display, as its user (the agent in the session holds the clipboard).
AS_USER = ["sudo", "-u", "alice", "env", "DISPLAY=:0", "XAUTHORITY=/home/alice/.Xauthority"]
BOOT_TIMEOUT = 480.0  # to both agents, under TCG on a busy 2-core machine
CONNECTED = {"guest_agent": "connected", "spice_agent": "connected"}
TIMES = "\N{MULTIPLICATION SIGN}"


def _vmdesk(ui: UI, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "vmdesk.cli.main", *args], input=stdin,
                          capture_output=True, env=ui.env, timeout=120, check=False)  # fmt: skip


def _guest(ui: UI, *argv: str, stdin: bytes | None = None) -> bytes:
    """Run ``argv`` in the guest; its stdout (it must succeed)."""
    extra = ["--stdin"] if stdin is not None else []
    done = _vmdesk(ui, "exec", *extra, NAME, "--", *argv, stdin=stdin)
    assert done.returncode == 0, (argv, done.stdout[-500:], done.stderr[-2000:])
    return done.stdout


def _guest_paste(ui: UI) -> bytes | None:
    paste = [*AS_USER, "xclip", "-o", "-selection", "clipboard", "-t", "UTF8_STRING"]
    done = _vmdesk(ui, "exec", NAME, "--", *paste)
    return done.stdout if done.returncode == 0 else None


def _guest_copy(ui: UI, data: bytes, kind: str = "UTF8_STRING") -> None:
    # xclip stays behind to serve the selection: its output must not be the agent's pipe.
    script = f"cat > /tmp/c && xclip -i -selection clipboard -t {kind} /tmp/c >/dev/null 2>&1"
    _guest(ui, *AS_USER, "sh", "-c", script, stdin=data)


def _guest_screen(ui: UI) -> tuple[int, int]:
    out = _guest(ui, *AS_USER, "xdpyinfo").decode()
    width, height = out.split("dimensions:")[1].split()[0].split("x")
    return int(width), int(height)


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.5)


def _agents_come_on_the_vm_page(page: Page, ui: UI, shot: Shot) -> None:
    page.goto(f"{ui.base}/vms/{NAME}")
    # just started: nothing answers yet, and nothing is said of the guest
    for agent in ("guest_agent", "spice_agent"):
        expect(page.locator(f"#vm-agents [data-agent={agent}]")).to_have_attribute(
            "data-state", "waiting"
        )
    expect(page.locator("#vm-guest")).to_have_count(0)
    shot("agents-waiting")
    # the page asks again by itself until they answer
    try:
        expect(page.locator("#vm-agents [data-agent=spice_agent]")).to_have_attribute(
            "data-state", "connected", timeout=BOOT_TIMEOUT * 1000
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{agents_report(ui.env, NAME)}") from None
    expect(page.locator("#vm-agents [data-agent=guest_agent]")).to_have_attribute(
        "data-state", "connected"
    )
    assert json.loads(ui.cli("status", NAME, "--json"))["agents"] == CONNECTED
    expect(page.locator("#vm-guest-os")).to_have_text("Debian GNU/Linux 12 (bookworm)")
    expect(page.locator("#vm-guest-address")).to_have_text("10.0.2.15")
    shot("agents-connected")


def _clipboard_both_ways(page: Page, ui: UI, shot: Shot) -> None:
    note = page.locator("#clipboard-note")
    text = "from the browser: grüße ✓"
    page.evaluate("text => navigator.clipboard.writeText(text)", text)
    page.locator("#clipboard-paste").click()
    expect(note).to_have_attribute("data-sent", re.compile(r"\d+"))
    _until(lambda: _guest_paste(ui) == text.encode(), 30, "the browser's text in the guest")

    _guest_copy(ui, "from the guest: ünïcode ✓".encode())
    expect(page.locator("#clipboard-notice")).to_contain_text("The guest copied text")
    shot("guest-copied")
    page.locator("#clipboard-copy").click()
    expect(note).to_have_text("copied text from the guest")
    assert page.evaluate("navigator.clipboard.readText()") == "from the guest: ünïcode ✓"
    expect(page.locator("#clipboard-notice")).to_be_hidden()

    png = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 40)).save(png, "PNG")
    _guest_copy(ui, png.getvalue(), "image/png")
    expect(page.locator("#clipboard-notice")).to_contain_text("The guest copied an image")
    page.locator("#clipboard-take").click()  # the notice's own button
    expect(note).to_have_text("copied an image from the guest")
    pasted = page.evaluate("""async () => {
      const [item] = await navigator.clipboard.read();
      const picture = await createImageBitmap(await item.getType("image/png"));
      return [item.types, picture.width, picture.height];
    }""")
    assert pasted == [["image/png"], 64, 48]


def _wanted(page: Page) -> tuple[int, int]:
    """The console box's size as the page asks for it (console_guest.js followSize)."""
    width, height = page.evaluate(
        "() => { const box = document.querySelector('#vnc-screen');"
        " return [box.clientWidth, box.clientHeight]; }"
    )
    return min(3840, max(640, width // 2 * 2)), min(2160, max(480, height // 2 * 2))


def _display_follows(page: Page, ui: UI, tmp_path: Path) -> tuple[int, int]:
    """Wait until the page asked for its box's size and the guest's X screen, noVNC's
    framebuffer and a screenshot are that size: the size asked for, or the guest's mode
    nearest below it (X's CVT modes go in steps of 8 pixels)."""
    want = _wanted(page)
    state = page.locator("#display-follow-state")
    expect(state).to_have_attribute("data-width", str(want[0]))
    expect(state).to_have_attribute("data-height", str(want[1]))

    def near(size: tuple[int, int]) -> bool:
        return all(w - 8 < got <= w for got, w in zip(size, want, strict=True))

    _until(lambda: near(_guest_screen(ui)), 60, f"the guest's X screen near {want}")
    screen = _guest_screen(ui)
    expect(page.locator("#vnc-resolution")).to_have_text(f"{screen[0]} {TIMES} {screen[1]}")
    ui.cli("screenshot", NAME, str(tmp_path / "screen.png"))
    with Image.open(tmp_path / "screen.png") as shot:
        assert shot.size == screen
    return screen


def test_the_console_shares_the_clipboard_and_the_guest_follows_the_window(
    page: Page,
    ui: UI,
    shot: Shot,
    page_errors: PageErrors,
    tmp_path: Path,
    desktop_image: Callable[[Arch], desktop.DesktopImage],
) -> None:
    desktop_image("x86_64")  # built (or found in the cache) before the clock starts
    ui.cli("create", NAME, "--image", "debian-desktop", "--arch", "x86_64", "--user", "alice",
           "--cpus", "2", "--memory", "2GiB", timeout=300)  # fmt: skip
    ui.cli("start", NAME)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=ui.base)
    _agents_come_on_the_vm_page(page, ui, shot)

    page.goto(f"{ui.base}/vms/{NAME}/console")
    expect(page.locator("#vnc-state")).to_have_attribute("data-state", "connected")
    expect(page.locator("#clipboard-state")).to_have_attribute("data-state", "connected")
    _clipboard_both_ways(page, ui, shot)

    first = _display_follows(page, ui, tmp_path)
    shot("display-follows")
    page.set_viewport_size({"width": 1000, "height": 760})
    second = _display_follows(page, ui, tmp_path)
    assert second[0] < first[0] and second[1] < first[1], (first, second)
    # 1:1 now that the guest's screen fits the box: not scaled by noVNC
    assert page.evaluate("window.vmdeskRFB.scaleViewport") is False
    shot("display-follows-smaller")
    no_page_errors(page_errors)


def test_without_a_spice_agent_the_console_says_so(
    page: Page, ui: UI, shot: Shot, page_errors: PageErrors
) -> None:
    """The tiny guest runs no agents: the controls say what they wait for and stay off; a
    paste on the page is not sent; with clipboard sharing off the page says that instead."""
    ui.cli("create", "bare", "--image", "tiny-linux", "--arch", "x86_64", timeout=300)
    ui.cli("start", "bare")
    page.goto(f"{ui.base}/vms/bare")
    expect(page.locator("#vm-agents [data-agent=spice_agent]")).to_have_attribute(
        "data-state", "waiting"
    )
    expect(page.locator("#vm-guest")).to_have_count(0)

    page.goto(f"{ui.base}/vms/bare/console")
    state = page.locator("#clipboard-state")
    expect(state).to_have_attribute("data-state", "waiting")
    expect(state).to_contain_text("waiting for the guest's SPICE agent")
    for control in ("#clipboard-paste", "#clipboard-copy", "#display-follow"):
        expect(page.locator(control)).to_be_disabled()
    expect(page.locator("#display-follow-label")).to_have_attribute("title", re.compile("agent"))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=ui.base)
    page.evaluate("navigator.clipboard.writeText('nobody to paste it')")
    page.locator("h1").click()  # the page, not the screen (noVNC sends keys to the guest)
    page.keyboard.press("Control+V")
    expect(page.locator("#clipboard-note")).to_have_text(
        "not sent: the guest's SPICE agent is not connected"
    )
    shot("no-agent")

    ui.cli("stop", "bare", "--force")
    expect(state).to_have_text("clipboard: the VM is not running")
    ui.cli("edit", "bare", "--no-clipboard")
    ui.cli("start", "bare")
    # the open page reconnects by itself (the old display's connection ended with the VM)
    expect(page.locator("#vnc-state")).to_have_attribute("data-state", "connected")
    page.reload()
    expect(state).to_contain_text("clipboard: sharing is off for this VM")
    expect(page.locator("#clipboard-paste")).to_be_disabled()
    shot("clipboard-off")
    no_page_errors(page_errors)
