"""A user's whole way through the web UI with a real guest: create the tiny Linux through the
wizard, start it from the library and watch its state change without a reload, see its
screen through noVNC (pixels the guest drew), type into its serial console through xterm.js
(with a second viewer watching), type on its display's keyboard, and take a snapshot."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import UI, PageErrors, Shot
from tests.browser.test_pages import no_page_errors

pytestmark = pytest.mark.vm

NAME = "tiny"
BUILD_TIMEOUT = 240_000  # ms: a fresh machine builds the tiny image from Debian packages
BOOT_TIMEOUT = 90_000  # ms: the guest's shell prompt under TCG emulation
PROMPT = "vmdesk-tiny#"
TIMES = "\N{MULTIPLICATION SIGN}"  # as the pages write sizes

# Pixels of the noVNC canvas brighter than dark grey (the guest's text on its console).
BRIGHT_PIXELS = """() => {
  const canvas = document.querySelector('#vnc-screen canvas');
  if (!canvas || !canvas.width || !canvas.height) return 0;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let bright = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] + data[i + 1] + data[i + 2] > 200) bright++;
  }
  return bright;
}"""


def serial_text(page: Page) -> str:
    return page.inner_text("#serial-term .xterm-rows")


def type_serial(page: Page, line: str) -> None:
    page.click("#serial-term")
    page.keyboard.type(line + "\n")


def wait_for_prompt(page: Page) -> None:
    """Press Enter until the guest's shell answers with its prompt (it may still be booting,
    or have printed its prompt before this viewer connected)."""
    rows = page.locator("#serial-term .xterm-rows")
    deadline = time.monotonic() + BOOT_TIMEOUT / 1000
    while PROMPT not in rows.inner_text():
        assert time.monotonic() < deadline, f"no shell prompt:\n{rows.inner_text()}"
        type_serial(page, "")
        page.wait_for_timeout(2000)


def mark_document(page: Page) -> None:
    """Tag this document; a page reload would lose the tag."""
    page.evaluate("window.__sameDocument = 'yes'")


def assert_same_document(page: Page) -> None:
    assert page.evaluate("window.__sameDocument") == "yes", "the page was reloaded"


def test_create_start_console_snapshot(
    page: Page, ui: UI, shot: Shot, page_errors: PageErrors
) -> None:
    # -- the wizard ---------------------------------------------------------------------
    page.click("nav a[data-nav=new]")
    page.fill("#vm-name", NAME)
    expect(page.locator("input[name=source][value=tiny-linux]")).to_be_checked()
    shot("wizard-source")
    page.click("#wizard-next")
    page.locator("label.choice", has_text="x86_64").click()
    expect(page.locator("#cpus")).to_have_value("1")
    expect(page.locator("#memory")).to_have_value("256")
    page.click("#wizard-next")
    page.check("#new-disk")  # a disk holds the snapshot's saved RAM
    page.fill("#disk-size", "1")
    page.click("#wizard-next")
    expect(page.locator("input[name=network][value=nat]")).to_be_checked()
    page.click("#wizard-next")
    page.click("#wizard-next")
    page.select_option("#resolution", "1024x768")
    page.click("#wizard-next")
    summary = page.locator("#wizard-summary")
    expect(summary).to_contain_text("built-in tiny Linux")
    expect(summary).to_contain_text("x86_64, 1 CPU, 256MiB")
    expect(summary).to_contain_text("1 GiB qcow2")
    expect(summary).to_contain_text(f"1024 {TIMES} 768")
    shot("wizard-summary")
    page.click("#wizard-next")
    expect(page.locator("#create-progress")).to_be_visible()
    expect(page).to_have_url(re.compile(rf"/vms/{NAME}$"), timeout=BUILD_TIMEOUT)
    expect(page.locator(".vm-head .badge")).to_have_text("Stopped")
    expect(page.locator("#disk-list")).to_contain_text("disks/")
    shot("vm-created")

    # -- the library: start it, the state changes without a reload ----------------------
    page.click("nav a[data-nav=library]")
    card = page.locator(f".vm-card[data-vm={NAME}]")
    expect(card.locator(".badge")).to_have_text("Stopped")
    expect(card.locator(".card-meta")).to_contain_text("x86_64")
    mark_document(page)
    shot("library-stopped")
    card.locator("button[data-action=start]").click()
    expect(card.locator(".badge")).to_have_text("Running", timeout=60_000)
    expect(card.locator("img.thumb[data-loaded]")).to_have_count(1, timeout=15_000)
    shot("library-running")

    # A change made elsewhere (the CLI) reaches the page by its event stream.
    ui.cli("pause", NAME)
    expect(card.locator(".badge")).to_have_text("Paused", timeout=15_000)
    shot("library-paused-from-cli")
    card.locator("button[data-action=resume]").click()
    expect(card.locator(".badge")).to_have_text("Running", timeout=15_000)
    assert_same_document(page)

    # -- the console: serial through xterm.js ---------------------------------------------
    card.locator("a[data-action=console]").click()
    expect(page).to_have_url(re.compile(rf"/vms/{NAME}/console$"))
    expect(page.locator("#serial-state")).to_have_attribute("data-state", "connected")
    expect(page.locator("#vnc-state")).to_have_attribute("data-state", "connected")
    wait_for_prompt(page)
    type_serial(page, "echo $((6 * 7))-from-the-guest")
    expect(page.locator("#serial-term .xterm-rows")).to_contain_text("42-from-the-guest")

    # A second viewer sees the same console.
    second = page.context.new_page()
    second.goto(f"{ui.base}/vms/{NAME}/console")
    expect(second.locator("#serial-state")).to_have_attribute("data-state", "connected")
    type_serial(page, "echo second-viewer-$((1 + 1))")
    # xterm.js draws only a terminal that is on screen.
    second.locator("#serial-term").scroll_into_view_if_needed()
    expect(second.locator("#serial-term .xterm-rows")).to_contain_text("second-viewer-2")
    second.close()

    # -- the display through noVNC: pixels the guest drew ---------------------------------
    expect(page.locator("#vnc-resolution")).to_have_text(f"1024 {TIMES} 768")
    type_serial(page, "echo 'VM-Desk: written on the guest screen' > /dev/tty1")
    page.wait_for_function(f"({BRIGHT_PIXELS})() > 100", timeout=20_000)
    shot("console-display")

    # The display's keyboard reaches the guest: a reader on the screen's console echoes it.
    type_serial(page, 'read -r line < /dev/tty1; echo "tty1 read: $line"')
    page.click("#vnc-screen canvas")
    page.keyboard.type("typed-in-novnc\n", delay=40)
    expect(page.locator("#serial-term .xterm-rows")).to_contain_text(
        "tty1 read: typed-in-novnc", timeout=15_000
    )
    shot("console-keyboard")

    # -- a snapshot from the VM page ------------------------------------------------------
    page.get_by_role("link", name="VM settings").click()
    expect(page).to_have_url(re.compile(rf"/vms/{NAME}$"))
    expect(page.locator("#no-snapshots")).to_be_visible()
    page.fill("#snapshot-name", "booted")
    page.click("#take-snapshot-button")
    snap = page.locator("#snapshot-tree li[data-snapshot=booted]")
    expect(snap).to_be_visible(timeout=60_000)
    expect(snap).to_contain_text("with RAM")
    shot("snapshot-taken")

    # The VM's logs: its serial console and QEMU's command line.
    expect(page.locator("#log-text")).to_contain_text("VMDESK-READY")
    page.select_option("#log-kind", "engine")
    expect(page.locator("#log-text")).to_contain_text("qemu-system-x86_64")
    no_page_errors(page_errors)
