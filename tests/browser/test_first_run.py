"""A first run on a host without QEMU: the library says what stops VMs from running here,
each with the command that installs it, beside its way into the wizard (a host that has
everything is told nothing: tests/web/test_api_doctor.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import UI, PageErrors
from tests.browser.test_pages import no_page_errors


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[UI]:
    """`vmdesk ui` on a PATH without QEMU and its tools (python is named by its path)."""
    bare = tmp_path / "bin"
    bare.mkdir()
    served = UI(tmp_path / "library", env={"PATH": str(bare)})
    yield served
    served.close()


def test_a_host_without_qemu_is_told_what_to_install(page: Page, page_errors: PageErrors) -> None:
    banner = page.locator("#doctor-banner")
    expect(banner).to_be_visible()
    expect(banner.locator("h2")).to_have_text("This computer can't run VMs yet")
    for check, fix in (("qemu-system-x86_64", "apt-get install qemu-system-x86"),
                       ("qemu-img", "sudo apt-get install qemu-utils")):  # fmt: skip
        item = banner.locator(f".doctor-check[data-check={check}]")
        expect(item).to_contain_text("not found on PATH")
        expect(item.locator(".doctor-fix")).to_contain_text(fix)
    expect(banner.locator(".doctor-check[data-check=swtpm]")).to_have_count(0)  # a warning
    expect(page.locator("#empty-state a", has_text="Create a VM")).to_be_visible()
    no_page_errors(page_errors)
