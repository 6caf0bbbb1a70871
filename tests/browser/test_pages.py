"""The pages without booting a guest: the empty library, the wizard's inline validation (the
same model as the CLI), the filter, and editing a stopped VM's settings."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import UI, PageErrors, Shot


def no_page_errors(errors: PageErrors) -> None:
    real = [e for e in errors.errors if "Failed to load resource" not in e]
    assert not real, "\n".join(real)


def test_empty_library_points_to_the_wizard(
    page: Page, shot: Shot, page_errors: PageErrors
) -> None:
    expect(page.locator("#empty-state")).to_be_visible()
    assert "token=" not in page.url  # the token is dropped from the address bar
    shot("empty-library")
    page.locator("#empty-state a", has_text="Create a VM").click()
    expect(page).to_have_url(re.compile(r"/new$"))
    expect(page.locator("#wizard-body[data-step=source]")).to_be_visible()
    no_page_errors(page_errors)


def test_wizard_shows_the_models_problems_inline(
    page: Page, ui: UI, shot: Shot, page_errors: PageErrors
) -> None:
    page.goto(f"{ui.base}/new")
    page.fill("#vm-name", "not a name!")
    page.click("#wizard-next")
    error = page.locator(".field-error[data-field=name]")
    expect(error).to_contain_text("is not a valid VM name")
    expect(page.locator("#wizard-body[data-step=source]")).to_be_visible()  # held back
    shot("bad-name")

    page.fill("#vm-name", "web")
    expect(error).to_have_count(0)
    page.click("#wizard-next")
    expect(page.locator("#wizard-body[data-step=system]")).to_be_visible()
    expect(page.locator("#wizard-body")).to_contain_text("This machine has")  # host limits
    page.fill("#memory", "32")
    expect(page.locator(".field-error[data-field=memory]")).to_contain_text(
        "below the minimum of 64MiB"
    )
    shot("memory-too-small")
    page.fill("#memory", "256")
    page.click("#wizard-next")  # storage
    page.click("#wizard-next")  # network
    page.click("#add-forward")
    page.fill("input[aria-label='Host port']", "8080")
    page.fill("input[aria-label='Guest port']", "80")
    page.click("#add-forward")
    page.locator("input[aria-label='Host port']").nth(1).fill("8080")
    page.locator("input[aria-label='Guest port']").nth(1).fill("81")
    expect(page.locator(".field-error").first).to_contain_text("forwarded twice")
    shot("forward-twice")
    page.locator("#forwards button", has_text="Remove").nth(1).click()
    expect(page.locator(".field-error")).to_have_count(0)
    for _ in range(3):  # shares, display, summary
        page.click("#wizard-next")
    summary = page.locator("#wizard-summary")
    expect(summary).to_contain_text("web")
    expect(summary).to_contain_text("tcp 127.0.0.1:8080 → 80")
    expect(page.locator("#wizard-next")).to_have_text("Create")
    shot("summary")
    no_page_errors(page_errors)


def test_filter_and_edit_a_stopped_vm(
    page: Page, ui: UI, shot: Shot, page_errors: PageErrors
) -> None:
    for name in ("alpha", "beta", "alphabet"):
        ui.cli("create", name, "--arch", "x86_64", "--memory", "512MiB")
    page.reload()
    cards = page.locator(".vm-card")
    expect(cards).to_have_count(3)
    expect(page.locator(".vm-card[data-vm=alpha] .badge")).to_have_text("Stopped")
    page.fill("#filter", "alpha")
    expect(page.locator(".vm-card:visible")).to_have_count(2)
    shot("filtered")
    page.fill("#filter", "nothing-like-it")
    expect(page.locator(".no-match")).to_be_visible()
    page.fill("#filter", "")
    expect(page.locator(".vm-card:visible")).to_have_count(3)

    page.locator(".vm-card[data-vm=beta] a.vm-name").click()
    expect(page).to_have_url(re.compile(r"/vms/beta$"))
    form = page.locator("#settings-form")
    form.locator("input[name=cpus]").fill("256")
    form.locator("button[type=submit]").click()
    expect(form.locator(".error-box")).to_contain_text("vCPUs asked for but this host has")
    form.locator("input[name=cpus]").fill("1")
    form.locator("input[name=memory]").fill("1GiB")
    form.locator("button[type=submit]").click()
    expect(page.locator(".vm-head")).to_contain_text("1 CPU · 1GiB")
    form.locator("input[name=memory]").fill("12MiB")
    form.locator("button[type=submit]").click()
    expect(form.locator(".error-box")).to_contain_text("below the minimum")

    forwards = page.locator("#add-forward")
    forwards.locator("input[name=host_port]").fill("2222")
    forwards.locator("input[name=guest_port]").fill("22")
    forwards.locator("button[type=submit]").click()
    expect(page.locator("#forward-list")).to_contain_text("127.0.0.1:2222")
    page.locator("#add-disk input[name=size]").fill("2GiB")
    page.locator("#add-disk button[type=submit]").click()
    expect(page.locator("#disk-list")).to_contain_text("2.0 GiB")
    shot("edited")

    config = json.loads(ui.cli("show", "beta", "--json"))["config"]
    assert config["cpus"] == 1
    assert config["memory"] == "1GiB"
    assert config["nics"][0]["forwards"][0]["host_port"] == 2222
    assert len(config["disks"]) == 1

    # Snapshots of the stopped VM's disk, as a tree: revert to the first, delete the second.
    page.on("dialog", lambda dialog: dialog.accept())  # "are you sure?"
    for snap in ("first", "second"):
        page.fill("#snapshot-name", snap)
        page.click("#take-snapshot-button")
        expect(page.locator(f"li[data-snapshot={snap}]")).to_be_visible()
    nested = page.locator("li[data-snapshot=first] li[data-snapshot=second]")
    expect(nested.locator(".badge.now")).to_be_visible()  # the disk descends from "second"
    page.locator("li[data-snapshot=first] > .snapshot-row button[data-action=revert]").click()
    expect(page.locator("li[data-snapshot=first] > .snapshot-row .badge.now")).to_be_visible()
    nested.locator("button[data-action=delete]").click()
    expect(page.locator("li[data-snapshot=second]")).to_have_count(0)
    shot("snapshots")
    tree = json.loads(ui.cli("snapshot", "list", "beta", "--json"))
    assert [s["name"] for s in tree["snapshots"]] == ["first"]

    # A full clone, from a dialog that follows the copy.
    page.click("#clone-vm")
    page.fill("#clone-name", "beta-copy")
    page.click("#clone-submit")
    expect(page).to_have_url(f"{ui.base}/vms/beta-copy")
    expect(page.locator("#disk-list")).to_contain_text("2.0 GiB")
    expect(page.locator("#forward-list")).to_contain_text("No port forwards")

    # Deleting a VM from its page leads back to the library, without it.
    page.goto(f"{ui.base}/vms/alphabet")
    page.click("#delete-vm")
    expect(page).to_have_url(f"{ui.base}/")
    expect(page.locator(".vm-card")).to_have_count(3)
    assert not (ui.home / "alphabet.vmdesk").exists()
    no_page_errors(page_errors)


@pytest.mark.parametrize("source", ["iso", "disk", "kernel"])
def test_wizard_creates_from_each_source(
    page: Page, ui: UI, shot: Shot, page_errors: PageErrors, tmp_path: Path, source: str
) -> None:
    """An installer ISO (UEFI, TPM, a new blank disk), an existing disk image (BIOS), or a
    kernel and initrd: each becomes the description the wizard summarised."""
    files = tmp_path / "files"
    files.mkdir()
    page.goto(f"{ui.base}/new")
    page.fill("#vm-name", f"from-{source}")
    page.check(f"input[name=source][value={source}]")
    if source == "iso":
        iso = files / "installer.iso"
        iso.write_bytes(b"\0" * 65536)
        page.fill("#iso-path", str(iso))
    elif source == "disk":
        disk = files / "guest.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "1G"], check=True)
        page.fill("#disk-path", str(disk))
    else:
        (files / "vmlinuz").write_bytes(b"kernel")
        (files / "initrd.img").write_bytes(b"initrd")
        page.fill("#kernel-path", str(files / "vmlinuz"))
        page.fill("#initrd-path", str(files / "initrd.img"))
        page.fill("#cmdline", "console=ttyS0 quiet")
    page.click("#wizard-next")
    page.locator("label.choice", has_text="x86_64").click()
    if source == "iso":
        expect(page.locator("#memory")).to_have_value("2")  # an installer wants more
        expect(page.locator("#memory-unit")).to_have_value("GiB")
    page.click("#wizard-next")
    if source == "iso":
        expect(page.locator("#new-disk")).to_be_checked()  # somewhere to install to
        page.fill("#disk-size", "4")
    page.click("#wizard-next")
    page.check("input[name=network][value=none]")
    page.click("#wizard-next")
    page.click("#wizard-next")
    if source == "iso":
        page.check("#tpm")
    if source == "disk":
        page.check("input[name=firmware][value=bios]")
    page.click("#wizard-next")
    shot(f"summary-{source}")
    page.click("#wizard-next")
    expect(page).to_have_url(f"{ui.base}/vms/from-{source}", timeout=60_000)
    expect(page.locator("#disk-list")).to_be_visible()
    shot(f"created-{source}")

    config = json.loads(ui.cli("show", f"from-{source}", "--json"))["config"]
    assert config["arch"] == "x86_64"
    assert config["nics"] == []
    if source == "iso":
        assert config["boot"] == {"kind": "uefi", "secure_boot": False}
        assert config["tpm"] is True
        assert config["cdroms"][0]["file"] == str(iso)
        assert config["memory"] == "2GiB"
        assert len(config["disks"]) == 1
        expect(page.locator("#disk-list")).to_contain_text("4.0 GiB")
        expect(page.locator("#cd-list")).to_contain_text("installer.iso")
        page.click("#cd-list button[data-action=eject]")  # the installation is done
        expect(page.locator("#cd-list")).to_have_count(0)
        assert json.loads(ui.cli("show", "from-iso", "--json"))["config"]["cdroms"] == []
    elif source == "disk":
        assert config["boot"]["kind"] == "bios"
        assert config["disks"] == [{**config["disks"][0], "file": str(disk), "format": "qcow2"}]
    else:
        assert config["boot"]["kind"] == "linux"
        assert config["boot"]["cmdline"] == "console=ttyS0 quiet"
        assert config["boot"]["kernel"].endswith("vmlinuz")
        assert config["boot"]["initrd"].endswith("initrd.img")
    no_page_errors(page_errors)
