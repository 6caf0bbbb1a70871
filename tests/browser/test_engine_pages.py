"""The VM page says which engine runs the VM and why; the console page of a vz VM points to
the native window instead of trying noVNC. No guest is booted."""

from __future__ import annotations

import sys

from playwright.sync_api import Page, expect

from tests.browser.conftest import UI, PageErrors, Shot
from tests.browser.test_pages import no_page_errors


def test_engine_reason_and_the_vz_console_note(
    page: Page, ui: UI, shot: Shot, page_errors: PageErrors
) -> None:
    ui.cli("create", "pc", "--arch", "x86_64", "--memory", "256MiB")
    ui.cli("create", "mac", "--engine", "vz", "--arch", "aarch64", "--memory", "256MiB")

    page.goto(f"{ui.base}/vms/pc")
    engine = page.locator("#vm-engine")
    expect(engine).to_contain_text("Engine: qemu (auto: ")
    if sys.platform == "linux":
        expect(engine).to_contain_text("runs only on macOS; this host is Linux")
    shot("qemu-vm")

    page.goto(f"{ui.base}/vms/pc/console")
    expect(page.locator("#vnc-state")).to_have_text("display: the VM is not running")
    expect(page.locator("#native-window")).to_have_count(0)

    page.goto(f"{ui.base}/vms/mac")
    expect(page.locator("#vm-engine")).to_contain_text("Engine: vz (")
    expect(page.locator("#native-window-note")).to_contain_text("vmdesk display mac --window")

    page.goto(f"{ui.base}/vms/mac/console")
    note = page.locator("#native-window")
    expect(note).to_contain_text("native macOS window")
    expect(page.locator("#native-window-command")).to_have_text("vmdesk display mac --window")
    expect(page.locator("#vnc-screen")).to_have_count(0)  # no noVNC for a vz VM
    shot("vz-console")
    no_page_errors(page_errors)


def test_the_vm_page_marks_what_its_engine_cannot_give(
    page: Page, ui: UI, shot: Shot, page_errors: PageErrors
) -> None:
    """What a QEMU VM asks for and gets (clipboard, TPM) is shown plainly; a VM for the vz
    engine, which does not run on this Linux host, shows what it asks for as unavailable,
    with the reason."""
    ui.cli("create", "asks", "--arch", "x86_64", "--memory", "256MiB", "--clipboard", "--tpm")
    page.goto(f"{ui.base}/vms/asks")
    features = page.locator("#vm-features")
    expect(features.locator("[data-feature=tpm]")).to_have_text("TPM 2.0")
    given = features.locator("[data-feature=clipboard]")
    expect(given).to_have_class("feature")  # not "feature unavailable"
    expect(given).to_contain_text("clipboard sharing")
    ui.cli("create", "mac", "--arch", "aarch64", "--engine", "vz", "--memory", "256MiB",
           "--clipboard")  # fmt: skip
    page.goto(f"{ui.base}/vms/mac")
    clipboard = page.locator("#vm-features [data-feature=clipboard]")
    expect(clipboard).to_have_class("feature unavailable")
    expect(clipboard).to_contain_text("clipboard sharing (unavailable: ")
    shot("features")
    no_page_errors(page_errors)
