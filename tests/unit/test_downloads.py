"""Pulling images over real HTTP from a server the test starts on 127.0.0.1: progress,
resuming with Range, digests, errors with hints, coalesced concurrent pulls, and the
`vmdesk image` commands as whole processes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vmdesk.core.errors import ConfigError, StorageError
from vmdesk.images import downloads
from vmdesk.images.downloads import Digest, DownloadError
from vmdesk.service import images

SIZE = 8 << 20
MiB = 1 << 20


class FileServer:
    """Serves ``files`` (path -> bytes) with Range support, and can be told to misbehave:
    ``cuts`` (body bytes after which each of the next responses is cut short), ``statuses``
    (path -> status to answer), ``stall`` (seconds of silence in a body, ``stall_at`` bytes
    into it: 0, before it), ``pace`` (a pause after each 64 KiB), ``ignore_range``,
    ``bad_range`` (a 206 from the wrong offset), ``claim_length`` (a Content-Length to
    announce instead of the real one), ``chunked`` (no Content-Length: chunked transfer
    coding), ``down_after`` (requests answered before every further one gets a 503); with
    ``tls``, it speaks HTTPS."""

    def __init__(self, files: dict[str, bytes], tls: ssl.SSLContext | None = None) -> None:
        self.files = files
        self.cuts: list[int] = []
        self.statuses: dict[str, int] = {}
        self.stall = 0.0
        self.stall_at = 0
        self.pace = 0.0
        self.ignore_range = False
        self.bad_range = False
        self.claim_length: int | None = None
        self.chunked = False
        self.down_after: int | None = None  # requests answered before 503s
        self.served = 0  # body bytes sent, over every request
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        scheme = "https" if isinstance(self.httpd.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.answer(self)

        return Handler

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        wanted = handler.headers.get("range")
        with self.lock:
            self.requests.append((handler.path, wanted))
            cut = self.cuts.pop(0) if self.cuts else None
            down = self.down_after is not None and len(self.requests) > self.down_after
        status = 503 if down else self.statuses.get(handler.path)
        data = self.files.get(handler.path)
        if status is not None or data is None:
            handler.send_response(status or 404)
            handler.send_header("content-length", "0")
            handler.end_headers()
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", wanted or "")
        if match and not self.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                handler.send_response(416)
                handler.send_header("content-range", f"bytes */{len(data)}")
                handler.send_header("content-length", "0")
                handler.end_headers()
                return
            shown = start + 1 if self.bad_range else start
            handler.send_response(206)
            handler.send_header("content-range", f"bytes {shown}-{len(data) - 1}/{len(data)}")
        else:
            handler.send_response(200)
        body = data[start:]
        if self.chunked:
            handler.send_header("transfer-encoding", "chunked")
        else:
            handler.send_header("content-length", str(self.claim_length or len(body)))
        handler.end_headers()
        body = body if cut is None else body[:cut]
        self._send(handler, body[: self.stall_at])
        time.sleep(self.stall)
        self._send(handler, body[self.stall_at :])
        if self.chunked and cut is None:
            handler.wfile.write(b"0\r\n\r\n")
        if cut is not None:
            handler.close_connection = True

    def _send(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        for at in range(0, len(body), 64 << 10):
            block = body[at : at + (64 << 10)]
            framed = b"%x\r\n%s\r\n" % (len(block), block) if self.chunked else block
            try:
                handler.wfile.write(framed)
            except OSError:
                return
            with self.lock:
                self.served += len(block)
            if self.pace:
                time.sleep(self.pace)


@pytest.fixture
def data() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def digest(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


@pytest.fixture
def server(data: bytes) -> Iterator[FileServer]:
    served = FileServer({"/disk.qcow2": data})
    yield served
    served.close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VMDESK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _dest(digest: Digest) -> Path:
    return downloads.cache_path(digest, "disk.qcow2")


def _leftovers(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file())


def test_pull_reports_progress_and_checks_the_digest(
    server: FileServer, cache: Path, data: bytes, digest: Digest
) -> None:
    seen: list[tuple[int, int | None]] = []
    path = downloads.fetch(
        server.url("/disk.qcow2"), _dest(digest), digest, progress=lambda d, t: seen.append((d, t))
    )
    assert path.read_bytes() == data
    assert path.is_relative_to(cache / "images")
    assert seen[-1] == (SIZE, SIZE) and len(seen) >= SIZE // downloads.PROGRESS_EVERY
    assert [d for d, _ in seen] == sorted({d for d, _ in seen})  # only ever forward
    assert _leftovers(cache) == [path]  # no partial file left beside it


def test_an_interrupted_transfer_resumes_with_range(
    server: FileServer, cache: Path, data: bytes, digest: Digest
) -> None:
    server.cuts = [3 * MiB, 2 * MiB]
    path = downloads.fetch(server.url("/disk.qcow2"), _dest(digest), digest)
    assert path.read_bytes() == data
    assert [r for _, r in server.requests] == [None, f"bytes={3 * MiB}-", f"bytes={5 * MiB}-"]
    assert server.served < 2 * SIZE


def test_a_later_pull_resumes_what_a_failed_one_left(
    server: FileServer, cache: Path, data: bytes, digest: Digest
) -> None:
    server.cuts = [5 * MiB]
    server.down_after = 1  # after the cut, the server answers 503
    with pytest.raises(DownloadError) as failed:
        downloads.fetch(server.url("/disk.qcow2"), _dest(digest), digest)
    assert "HTTP 503" in failed.value.message and "try again later" in (failed.value.hint or "")
    assert downloads.partial_path(_dest(digest)).stat().st_size == 5 * MiB

    server.down_after = None
    path = downloads.fetch(server.url("/disk.qcow2"), _dest(digest), digest)
    assert path.read_bytes() == data
    assert server.requests[-1][1] == f"bytes={5 * MiB}-"
    assert server.served < 2 * SIZE


@pytest.mark.parametrize("misbehaviour", ["ignore_range", "bad_range"])
def test_a_server_that_does_not_resume_properly_means_starting_over(
    server: FileServer, cache: Path, data: bytes, digest: Digest, misbehaviour: str
) -> None:
    setattr(server, misbehaviour, True)
    server.cuts = [3 * MiB]
    path = downloads.fetch(server.url("/disk.qcow2"), _dest(digest), digest)
    assert path.read_bytes() == data
    assert server.requests[1][1] == f"bytes={3 * MiB}-"  # it asked to resume...
    assert server.served >= 3 * MiB + SIZE  # ...and took the whole file again


def test_a_wrong_digest_is_refused_and_nothing_is_left(
    server: FileServer, cache: Path, data: bytes
) -> None:
    wrong = Digest("sha512", hashlib.sha512(b"another file").hexdigest())
    with pytest.raises(DownloadError) as refused:
        downloads.fetch(server.url("/disk.qcow2"), _dest(wrong), wrong)
    got = hashlib.sha512(data).hexdigest()
    message = refused.value.message
    assert f"expected {wrong}" in message and f"got sha512:{got}" in message
    assert "deleted" in message and "\n" not in message and refused.value.hint
    assert _leftovers(cache) == [] and not _dest(wrong).parent.exists()


def test_not_found_is_one_line_with_a_hint(server: FileServer, cache: Path, digest: Digest) -> None:
    with pytest.raises(DownloadError) as missing:
        downloads.fetch(server.url("/gone.img"), _dest(digest), digest)
    assert missing.value.message == f"127.0.0.1 has no file at {server.url('/gone.img')} (HTTP 404)"
    assert "check the URL" in (missing.value.hint or "")
    assert _leftovers(cache) == []


def test_connection_refused_names_the_host(cache: Path, digest: Digest) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError) as refused:
        downloads.fetch(f"http://127.0.0.1:{port}/disk.qcow2", _dest(digest), digest)
    assert refused.value.message == f"127.0.0.1:{port} refused the connection"
    assert "check the network connection" in (refused.value.hint or "")


def test_a_silent_server_times_out(server: FileServer, cache: Path, digest: Digest) -> None:
    server.stall = 3.0
    started = time.monotonic()
    with pytest.raises(DownloadError) as slow:
        downloads.fetch(server.url("/disk.qcow2"), _dest(digest), digest, timeout=0.5)
    assert slow.value.message.startswith("127.0.0.1 sent nothing for 0.5 s")
    assert "resumes" in (slow.value.hint or "")
    assert time.monotonic() - started < 2.5


def test_a_server_that_falls_silent_mid_body_is_asked_for_the_rest(
    server: FileServer, cache: Path, data: bytes, digest: Digest
) -> None:
    server.stall, server.stall_at = 3.0, 3 * MiB + 12345  # in every response
    path = downloads.fetch(server.url("/disk.qcow2"), _dest(digest), digest, timeout=0.5)
    assert path.read_bytes() == data
    at = server.stall_at  # every byte received before a silence is kept, and resumed after
    assert [r for _, r in server.requests] == [None, f"bytes={at}-", f"bytes={2 * at}-"]


def test_a_chunked_body_without_a_length_is_pulled(
    server: FileServer, cache: Path, data: bytes, digest: Digest
) -> None:
    server.chunked = True
    seen: list[tuple[int, int | None]] = []
    path = downloads.fetch(
        server.url("/disk.qcow2"), _dest(digest), digest, progress=lambda d, t: seen.append((d, t))
    )
    assert path.read_bytes() == data
    assert seen[-1] == (SIZE, None)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
def test_a_pull_over_https_checks_the_certificate_and_the_digest(
    tmp_path: Path, cache: Path, data: bytes, digest: Digest, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = FileServer({"/disk.qcow2": data}, tls=tls)
    try:
        with pytest.raises(DownloadError):  # not signed by a known authority
            downloads.fetch(server.url("/disk.qcow2"), _dest(digest), digest)
        monkeypatch.setattr(downloads, "_tls", lambda: ssl.create_default_context(cafile=cert))
        server.stall, server.stall_at = 3.0, 5 * MiB  # a silence, then the rest asked for
        url = server.url("/disk.qcow2")
        path = downloads.fetch(url, _dest(digest), digest, timeout=0.5)
        assert path.read_bytes() == data
        assert [r for _, r in server.requests] == [None, f"bytes={5 * MiB}-"]  # (none untrusted)
    finally:
        server.close()


def test_not_enough_space_names_the_path_and_what_is_needed(
    server: FileServer, cache: Path, digest: Digest
) -> None:
    server.claim_length = 1 << 60  # more than any disk here
    with pytest.raises(StorageError) as full:
        downloads.fetch(server.url("/disk.qcow2"), _dest(digest), digest)
    assert str(_dest(digest).parent) in full.value.message
    assert "needs 1024 PiB more" in full.value.message or "needs 1048576 TiB more" in (
        full.value.message
    )
    assert "VMDESK_CACHE" in (full.value.hint or "")
    assert not downloads.partial_path(_dest(digest)).exists()


def test_two_pulls_of_one_image_download_it_once(
    server: FileServer, cache: Path, data: bytes, digest: Digest
) -> None:
    server.pace = 0.002  # long enough for the second pull to arrive during the first
    results: list[Path] = []
    pulls = [
        threading.Thread(
            target=lambda: results.append(
                downloads.fetch(server.url("/disk.qcow2"), _dest(digest), digest)
            )
        )
        for _ in range(2)
    ]
    for pull in pulls:
        pull.start()
    for pull in pulls:
        pull.join(60)
    assert results == [_dest(digest)] * 2
    assert len(server.requests) == 1 and server.served == SIZE
    assert _dest(digest).read_bytes() == data


def test_a_cached_image_is_never_downloaded_again(
    server: FileServer, cache: Path, digest: Digest
) -> None:
    url = server.url("/disk.qcow2")
    path = images.pull(url, digest=str(digest))
    assert images.cached(url, digest=str(digest)) == path
    assert images.pull(url, digest=str(digest)) == path
    assert len(server.requests) == 1
    [row] = images.pulled()
    assert row["url"] == url and row["digest"] == str(digest) and row["size"] == SIZE


def test_a_url_needs_a_digest(server: FileServer, cache: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        images.pull(server.url("/disk.qcow2"))
    assert refused.value.problems[0].field == "digest"
    assert "--digest sha256:" in (refused.value.hint or "")
    assert server.requests == []


def _vmdesk(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vmdesk.cli.main", "image", *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**os.environ, "VMDESK_CACHE": str(cache), "COLUMNS": "200"},
    )  # fmt: skip


def test_cli_pull_list_and_remove(server: FileServer, cache: Path, digest: Digest) -> None:
    url = server.url("/disk.qcow2")
    done = _vmdesk(cache, "pull", url, "--digest", str(digest))
    assert done.returncode == 0, done.stderr
    path = _dest(digest)
    assert "100%" in done.stdout and str(path) in done.stdout and "digest checked" in done.stdout

    again = _vmdesk(cache, "pull", url, "--digest", str(digest))
    assert again.returncode == 0 and "already cached" in again.stdout
    assert len(server.requests) == 1

    listed = json.loads(_vmdesk(cache, "list", "--json").stdout)
    assert [p["path"] for p in listed["pulled"]] == [str(path)]
    assert {(r["name"], r["arch"]) for r in listed["catalog"]} >= {("debian-12", "aarch64")}
    assert not any(r["cached"] for r in listed["catalog"])

    removed = _vmdesk(cache, "rm", "disk.qcow2")
    assert removed.returncode == 0 and not path.exists()
    assert json.loads(_vmdesk(cache, "list", "--json").stdout)["pulled"] == []


def test_cli_errors_are_one_line_with_a_hint(server: FileServer, cache: Path) -> None:
    done = _vmdesk(cache, "pull", server.url("/disk.qcow2"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: digest: ") and lines[1].startswith("hint: add --digest")
    missing = _vmdesk(cache, "pull", server.url("/nope.img"), "--digest", "sha256:" + "0" * 64)
    assert missing.returncode == 1 and "(HTTP 404)" in missing.stderr
    assert "Traceback" not in missing.stderr and "hint:" in missing.stderr
