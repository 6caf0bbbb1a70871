"""The web UI with a libvirt host (`lab`: this machine's test libvirtd): the library shows
the host's group, the wizard makes the tiny Linux on it, its VM page shows what the libvirt
engine can't give as unavailable, it starts from the page, its display is seen through
noVNC over libvirt (no VNC port on the host), and it stops from the library."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PageErrors, Shot
from tests.browser.test_vm_journey import BRIGHT_PIXELS, BUILD_TIMEOUT
from tests.libvirt.conftest import lab, system_uri, vm_name  # noqa: F401  (the fixtures)
from tests.vm.conftest import CLI

pytestmark = pytest.mark.vm


def test_a_vm_on_a_host_is_made_started_seen_and_stopped_from_the_pages(
    lab: CLI,  # noqa: F811  (before the page: the library knows host lab when it loads)
    vm_name: str,  # noqa: F811
    page: Page,
    shot: Shot,
    page_errors: PageErrors,
) -> None:
    # -- the library: this desk, then host lab ----------------------------------------------
    group = page.locator(".host-group[data-host=lab]")
    expect(group.locator(".group-title")).to_have_text("lab")
    expect(group.locator(".host-facts")).to_contain_text("qemu:///system")
    expect(group.locator(".host-facts")).to_contain_text("libvirt 9.")
    expect(page.locator("#desk-title")).to_be_visible()
    expect(page.locator("#empty-state")).to_be_visible()  # the desk's own list is empty
    shot("library-with-host")

    # -- the wizard: made on lab --------------------------------------------------------------
    page.click("nav a[data-nav=new]")
    where = page.locator("#wizard-where")
    expect(where.locator("input[name=where][value='']")).to_be_checked()  # this desk first
    where.locator("label.choice", has_text="Host lab").click()
    expect(where.locator("input[name=where][value=lab]")).to_be_checked()
    page.fill("#vm-name", vm_name)
    page.click("#wizard-next")
    page.locator("label.choice", has_text="x86_64").click()
    for _ in range(5):  # storage, network, shares, display: as they come
        page.click("#wizard-next")
    summary = page.locator("#wizard-summary")
    expect(summary).to_contain_text("host lab")
    expect(summary).to_contain_text("built-in tiny Linux")
    shot("wizard-summary")
    page.click("#wizard-next")
    expect(page.locator("#create-progress")).to_contain_text("then uploading it to host lab")
    expect(page).to_have_url(re.compile(rf"/vms/lab%3A{vm_name}$"), timeout=BUILD_TIMEOUT)

    # -- its page: what libvirt can't give is unavailable, never on ---------------------------
    head = page.locator(".vm-head")
    expect(head.locator(".badge")).to_have_text("Stopped")
    expect(page.locator("#vm-host")).to_contain_text("On host lab")
    expect(page.locator("#vm-engine")).to_contain_text("libvirt")
    clipboard = page.locator("#vm-features .feature[data-feature=clipboard]")
    expect(clipboard).to_have_class(re.compile(r"\bunavailable\b"))
    expect(clipboard).to_contain_text("unavailable: the libvirt engine does not offer")
    expect(page.locator("#vm-features .feature:not(.unavailable)")).to_have_count(0)
    expect(page.locator("#disk-list")).to_contain_text(f"{vm_name}-")  # volumes on lab
    expect(page.locator("#host-logs")).to_contain_text("kept on lab")
    shot("vm-page-stopped")
    page.locator("#vm-actions button[data-action=start]").click()
    expect(head.locator(".badge")).to_have_text("Running", timeout=60_000)
    shot("vm-page-running")

    # -- its display through noVNC, over libvirt ----------------------------------------------
    page.click("#open-console")
    expect(page).to_have_url(re.compile(rf"/vms/lab%3A{vm_name}/console$"))
    expect(page.locator("#vnc-state")).to_have_attribute("data-state", "connected")
    page.wait_for_function(f"({BRIGHT_PIXELS})() > 100", timeout=60_000)  # its boot text
    expect(page.locator("#clipboard-state")).to_contain_text("clipboard: unavailable")
    shot("console-display")

    # -- the library: running on lab, stopped from its card -----------------------------------
    page.click("nav a[data-nav=library]")
    card = page.locator(f".host-group[data-host=lab] .vm-card[data-vm='lab:{vm_name}']")
    expect(card.locator(".badge")).to_have_text("Running")
    card.locator("button[data-action=stop]").click()
    expect(card.locator(".badge")).to_have_text("Stopped", timeout=60_000)
    shot("library-stopped")
    assert not page_errors.errors, "\n".join(page_errors.errors)
