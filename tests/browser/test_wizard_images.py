"""The wizard's image sources: the catalog listed from /api/images for the chosen
architecture, and an image at a URL (served here over loopback) with its digest, which
becomes a VM whose disk is a qcow2 overlay on the pulled image with a cloud-init seed, with
the download's progress shown while it runs and the server's problems next to their fields."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import UI, PageErrors, Shot
from tests.browser.test_pages import no_page_errors
from vmdesk.core.units import human_size

MiB = 1 << 20
HELD_AFTER = 3 * MiB  # the served body pauses here until the test has seen the progress


@pytest.fixture
def ui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[UI]:
    """`vmdesk ui` with a cache of its own: nothing in the catalog is downloaded yet."""
    monkeypatch.setenv("VMDESK_CACHE", str(tmp_path / "cache"))
    served = UI(tmp_path / "library")
    yield served
    served.close()


class ImageServer:
    """Serves one file over HTTP on 127.0.0.1 from a thread; each response stops after
    HELD_AFTER bytes until ``release`` is set (at most 20 s: the client gives up on a
    silence of 30 s), so a test can look at a download while it is under way."""

    def __init__(self, path: str, body: bytes) -> None:
        self.path = path
        self.body = body
        self.release = threading.Event()
        self.held = threading.Event()  # the first HELD_AFTER bytes went out
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{self.path}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != server.path:
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("content-type", "application/octet-stream")
                self.send_header("content-length", str(len(server.body)))
                self.end_headers()
                view = memoryview(server.body)
                self.wfile.write(view[:HELD_AFTER])
                self.wfile.flush()
                server.held.set()
                server.release.wait(20)
                self.wfile.write(view[HELD_AFTER:])

        return Handler


def cloud_image(folder: Path) -> bytes:
    """A 64 MiB qcow2 disk that looks like a bootable one (an MBR's boot signature, and
    some MiB of data so that the download takes several progress reports); it is never
    booted."""
    raw = folder / "guest.raw"
    with raw.open("wb") as f:
        f.truncate(64 * MiB)
        f.seek(510)
        f.write(b"\x55\xaa")
        f.seek(MiB)
        f.write(os.urandom(6 * MiB))  # incompressible: the qcow2 file holds all of it
    image = folder / "guest.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(raw), str(image)], check=True)
    return image.read_bytes()


def test_wizard_lists_the_catalog_and_creates_from_an_image_url(
    page: Page, ui: UI, shot: Shot, page_errors: PageErrors, tmp_path: Path
) -> None:
    page.goto(f"{ui.base}/new")
    page.fill("#vm-name", "cloudy")
    page.check("input[name=source][value=catalog]")
    page.select_option("#catalog-arch", "x86_64")
    listed = page.request.get(f"{ui.base}/api/images?arch=x86_64").json()["catalog"]
    names = [row["name"] for row in listed]
    assert {"ubuntu-24.04", "debian-12"} <= set(names)
    choices = page.locator("#catalog-list .image-choice")
    expect(choices).to_have_count(len(names))
    for row in listed:
        choice = page.locator(f"#catalog-list .image-choice[data-image='{row['name']}']")
        expect(choice.locator(".image-name")).to_have_text(row["name"])
        expect(choice).to_contain_text(row["description"])
        expect(choice).to_contain_text("not downloaded")  # a cache of its own: nothing yet
        expect(choice).to_contain_text("cloud-init: yes" if row["cloud_init"] else "cloud-init: no")
    shot("catalog")
    page.click("#wizard-next")  # no image chosen: held back, said next to the list
    expect(page.locator(".field-error[data-field=image]")).to_contain_text(
        "choose an image from the catalog"
    )
    expect(page.locator("#wizard-body[data-step=source]")).to_be_visible()
    debian = page.locator("#catalog-list .image-choice[data-image='debian-12']")
    debian.click()
    expect(debian).to_have_class(re.compile(r"\bselected\b"))
    expect(page.locator(".field-error[data-field=image]")).to_have_count(0)
    shot("catalog-chosen")

    # An image at a URL, with its digest; a user name the seed refuses comes back from the
    # server (before anything is downloaded) and is shown next to its field.
    server = ImageServer("/guest.qcow2", cloud_image(tmp_path))
    try:
        digest = "sha256:" + hashlib.sha256(server.body).hexdigest()
        page.check("input[name=source][value=url]")
        page.click("#wizard-next")
        expect(page.locator(".field-error[data-field=url]")).to_contain_text("give the image's URL")
        page.fill("#image-url", server.url)
        page.fill("#image-digest", digest)
        page.fill("#image-user", "Not A User")
        expect(page.locator(".field-error")).to_have_count(0)
        page.click("#wizard-next")  # system
        expect(page.locator("#memory")).to_have_value("2")  # an OS of its own wants more
        page.fill("#memory", "512")
        page.select_option("#memory-unit", "MiB")
        page.click("#wizard-next")  # storage
        expect(page.locator("#image-disk-size")).to_have_value("20")
        page.fill("#image-disk-size", "2")
        for _ in range(4):  # network, shares, display, summary
            page.click("#wizard-next")
        summary = page.locator("#wizard-summary")
        expect(summary).to_contain_text(server.url)
        expect(summary).to_contain_text("2 GiB, an overlay on the image")
        expect(summary).to_contain_text("user Not A User")
        page.click("#wizard-next")  # Create
        expect(page.locator("#create-progress .error-box")).to_contain_text(
            "is not a valid Linux user name"
        )
        assert not server.held.is_set()  # refused before the download
        page.locator("#wizard-problems button", has_text="Go to Source").click()
        error = page.locator(".field-error[data-field=user]")
        expect(error).to_contain_text("is not a valid Linux user name")
        shot("user-refused")
        page.fill("#image-user", "alice")
        expect(error).to_have_count(0)
        page.locator("#wizard-steps li[data-step=summary] button").click()
        expect(summary).to_contain_text("user alice")

        page.click("#wizard-next")  # Create: the image is downloaded as part of the job
        assert server.held.wait(30), "the image was never asked for"
        bar = page.locator("#create-progress li.running progress")
        page.wait_for_function(
            "el => el.value > 0 && el.value < 100", arg=bar.element_handle(), timeout=30_000
        )
        message = page.locator("#create-progress li.running .progress-message")
        of = human_size(len(server.body))  # the bytes so far of the file's, as pulls say it
        said = rf"downloading {re.escape(server.url)}: [0-9.]+ [KM]iB of {re.escape(of)}"
        expect(message).to_contain_text(re.compile(said))
        shown = bar.evaluate("el => el.value")
        assert 0 < shown <= 100 * HELD_AFTER / len(server.body)  # what had arrived
        percent = page.locator("#create-progress li.running .progress-percent")
        expect(percent).to_have_text(f"{int(shown)}%")
        shot("download-progress")
        server.release.set()
        expect(page).to_have_url(f"{ui.base}/vms/cloudy", timeout=60_000)
    finally:
        server.close()
    expect(page.locator("#cd-list")).to_contain_text("seed.iso")
    shot("created")

    disks = page.request.get(f"{ui.base}/api/vms/cloudy/disks").json()
    assert [d["file"] for d in disks] == ["disks/disk0.qcow2"]
    image = disks[0]["image"]
    assert image["format"] == "qcow2"
    assert image["virtual_size"] == 2 << 30
    assert image["backing_chain"] and ".bases/images/" in image["backing_chain"][0]
    config = page.request.get(f"{ui.base}/api/vms/cloudy").json()["config"]
    assert [c["file"] for c in config["cdroms"]] == ["cloud-init/seed.iso"]
    assert config["memory"] == "512MiB"

    page.goto(ui.base)
    card = page.locator(".vm-card[data-vm=cloudy]")
    expect(card).to_be_visible()
    expect(card.locator(".badge")).to_have_text("Stopped")
    shot("library")
    no_page_errors(page_errors)
