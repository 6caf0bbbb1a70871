"""Downloading guest images into the cache: streamed to a partial file, resumed with a
``Range`` request after an interruption, checked against a digest over the whole file, then
renamed into place, so that a file at an image's cache path is always complete and verified.

Two pulls of one image (threads or processes) coalesce: each takes an exclusive lock on the
partial file, and whoever gets it second finds the image already cached.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import os
import queue
import re
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from vmdesk.core import paths
from vmdesk.core.atomic import fsync_dir
from vmdesk.core.errors import StorageError, VMDeskError
from vmdesk.core.units import human_size

if TYPE_CHECKING:
    import ssl

    import httpcore
    import httpx

Progress = Callable[[int, int | None], None]  # bytes on disk so far, total (None: unknown)
Algorithm = Literal["sha256", "sha512"]
Chunk = bytes | memoryview
Release = Callable[[], None]  # gives a chunk's memory back to whoever lent it

TIMEOUT = 30.0  # seconds without a byte (or a connection) before giving up
ATTEMPTS = 5  # consecutive attempts that brought no new byte, then the error is final
PROGRESS_EVERY = 1 << 20  # bytes between progress calls (every chunk would be ~16 a MiB)
READ = 1 << 20  # bytes read into one buffer once the body is read directly
BUFFERS = 8  # such buffers, reused: at most this much is received but not hashed yet
WRITEBACK_EVERY = 16 << 20  # bytes written between starting their writeback to the disk
_HEX = {"sha256": 64, "sha512": 128}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d+)$")


class DownloadError(VMDeskError):
    """Fetching an image failed: the network, the server, or bytes that are not the ones
    expected (nothing unverified is ever left where an image is looked for)."""


@dataclass(frozen=True)
class Digest:
    """A published checksum: ``sha256:HEX`` or ``sha512:HEX``."""

    algorithm: Algorithm
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """The digest ``text`` spells; ValueError (saying why) when it spells none."""
        algorithm, sep, value = text.strip().partition(":")
        value = value.lower()
        if not sep or algorithm not in _HEX:
            raise ValueError(f"{text!r} is not sha256:HEX or sha512:HEX")
        if len(value) != _HEX[algorithm] or not re.fullmatch(r"[0-9a-f]+", value):
            raise ValueError(f"a {algorithm} digest is {_HEX[algorithm]} hexadecimal digits")
        return cls("sha256" if algorithm == "sha256" else "sha512", value)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


def pulled_dir() -> Path:
    """Where pulled images live: one directory per digest (content-addressed)."""
    return paths.cache_dir() / "images" / "pulled"


def cache_path(digest: Digest, file_name: str) -> Path:
    return pulled_dir() / f"{digest.algorithm}-{digest.hex}" / file_name


def partial_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial")


def fetch(
    url: str,
    dest: Path,
    digest: Digest,
    *,
    progress: Progress | None = None,
    timeout: float = TIMEOUT,
) -> Path:
    """``dest``, downloaded from ``url`` unless already there, its ``digest`` checked."""
    while not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _locked(partial_path(dest), digest) as part:
            if part is None:  # the file we waited for was renamed or removed: look again
                continue
            if dest.exists():  # another pull finished it while we waited
                part.discard()
                break
            try:
                _download(url, part, digest, progress, timeout)
            except BaseException:
                if part.size == 0:  # nothing (left) worth resuming: leave no trace
                    part.discard()
                    with contextlib.suppress(OSError):
                        dest.parent.rmdir()
                raise
            part.sync()  # the bytes are on disk before the name says "complete"
            os.replace(part.path, dest)
            fsync_dir(dest.parent)
    return dest


def verify_file(path: Path, digest: Digest) -> None:
    """Raise DownloadError unless ``path`` has ``digest``."""
    hasher = digest.hasher()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            hasher.update(block)
    if hasher.hexdigest() != digest.hex:
        raise DownloadError(
            f"{path} does not have the expected digest: expected {digest}, "
            f"got {digest.algorithm}:{hasher.hexdigest()}",
            hint="check the digest, or the file (it may be damaged or another version)",
        )


class _Hashing:
    """The hash of a stream, computed on a thread of its own: hashlib lets go of the GIL,
    so hashing runs beside receiving and writing instead of after each chunk (sequentially,
    sha256 alone would halve a pull's speed on loopback)."""

    BATCH = 1 << 20  # bytes handed over at a time: fewer hand-overs, same memory bound

    def __init__(self, digest: Digest) -> None:
        self._hasher = digest.hasher()
        self._queue: queue.Queue[tuple[list[Chunk], list[Release]] | None] = queue.Queue(32)
        self._batch: list[Chunk] = []
        self._releases: list[Release] = []
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            chunks, releases = item
            for chunk in chunks:
                self._hasher.update(chunk)
            for release in releases:
                release()

    def update(self, chunk: Chunk, release: Release | None = None) -> None:
        """Hash ``chunk``; ``release`` (if any) is called once it is hashed and its memory is
        free again. Such a chunk goes over at once: its owner may be waiting for it back."""
        self._batch.append(chunk)
        self._pending += len(chunk)
        if release is not None:
            self._releases.append(release)
        if self._pending >= self.BATCH or release is not None:
            self._queue.put((self._batch, self._releases))
            self._batch, self._releases, self._pending = [], [], 0

    def hexdigest(self) -> str:
        """The hash of everything given (ends the thread: call once)."""
        self.close()
        return self._hasher.hexdigest()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put((self._batch, self._releases))
            self._queue.put(None)
            self._thread.join()


class _Writeback:
    """Starts writing a file's bytes to the disk while more arrive, on a thread of its own
    (a request may wait for the device's queue): left to the end, the fsync before the rename
    would wait for all of them after the last byte (100-150 ms for 256 MiB here), where this
    leaves it the last WRITEBACK_EVERY bytes or so."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._queue: queue.Queue[tuple[int, int] | None] = queue.Queue()
        self._started = 0  # bytes of the file handed over so far
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="writeback", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (span := self._queue.get()) is not None:
            try:
                # DONTNEED writes the range's dirty pages back without waiting for them (the
                # page cache keeps them until they are clean); errors stay for the fsync
                os.posix_fadvise(self._fd, *span, os.POSIX_FADV_DONTNEED)
            except OSError as exc:
                self._error = exc

    def written(self, size: int) -> None:
        """The file now holds ``size`` bytes."""
        if size < self._started:  # truncated: start over
            self._started = 0
        if size - self._started >= WRITEBACK_EVERY:
            self._queue.put((self._started, size - self._started))
            self._started = size

    def close(self) -> None:
        """Wait for the writes started; raise the error starting one met."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error


class _Partial:
    """The partial file, open and locked, and the hash of the bytes in it so far."""

    def __init__(self, path: Path, fd: int, digest: Digest) -> None:
        self.path, self.fd, self.digest = path, fd, digest
        self.hashing = _Hashing(digest)
        self.writeback = _Writeback(fd)
        self.size = 0
        self.total: int | None = None
        os.lseek(fd, 0, os.SEEK_SET)
        while block := os.read(fd, 1 << 20):  # what an earlier pull left: resumed after it
            self.hashing.update(block)
            self.size += len(block)

    def restart(self) -> None:
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.hashing.close()
        self.hashing, self.size = _Hashing(self.digest), 0
        self.writeback.written(0)

    def write(self, chunk: Chunk, release: Release | None = None) -> None:
        try:
            view = memoryview(chunk)
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self.discard()
                raise _no_space(self.path.parent, self.total, self.size) from None
            raise
        self.hashing.update(chunk, release)
        self.size += len(chunk)
        self.writeback.written(self.size)

    def sync(self) -> None:
        """Every byte written is on the disk (raises what writing them back met)."""
        self.writeback.close()
        os.fsync(self.fd)

    def close(self) -> None:
        """Stop the threads (before the file descriptor they use is closed)."""
        self.hashing.close()
        with contextlib.suppress(OSError):  # a pull that ends here fails or syncs first
            self.writeback.close()

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.size = 0


@contextlib.contextmanager
def _locked(path: Path, digest: Digest) -> Iterator[_Partial | None]:
    """The partial file at ``path``, locked; None if, once locked, it is no longer there
    (its owner renamed or removed it while we waited)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:  # its directory went with a failed pull: make it again
        yield None
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is None or (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
            yield None
        else:
            part = _Partial(path, fd, digest)
            try:
                yield part
            finally:
                part.close()
    finally:
        os.close(fd)  # releases the lock


def _download(
    url: str, part: _Partial, digest: Digest, progress: Progress | None, timeout: float
) -> None:
    """Fill ``part`` from ``url`` (resuming where it stands), then check its digest."""
    import httpx  # here: `vmdesk image list` and the web app's start need none of it

    host = urlsplit(url).hostname or url
    # identity: the bytes on disk must be the server's file, not a re-encoding of it.
    headers = {"accept-encoding": "identity", "user-agent": "vmdesk"}
    reporter = _Reporter(progress)
    fruitless = 0  # attempts in a row that brought no new byte
    with httpx.Client(
        timeout=timeout, follow_redirects=True, headers=headers, verify=_tls()
    ) as client:
        while True:
            before, error = part.size, None
            try:
                if _transfer(client, url, part, reporter):
                    break
            except httpx.TransportError as exc:
                error = exc
            fruitless = 0 if part.size > before else fruitless + 1
            if error is not None and (fruitless >= ATTEMPTS or (fruitless and _final(error))):
                raise _transport_error(error, url, host, timeout) from None
            if fruitless >= ATTEMPTS:
                raise DownloadError(
                    f"{host} never sent the rest of {url} (stuck at {human_size(part.size)})",
                    hint="try again later, or another mirror",
                )
    reporter.done(part.size, part.total)
    got = part.hashing.hexdigest()
    if got != digest.hex:
        part.discard()
        raise DownloadError(
            f"{url} is not the expected image: expected {digest}, got {digest.algorithm}:{got} "
            f"({human_size(part.size)}); the download was deleted",
            hint="check the digest; if it is right, the server sent another file (try again "
            "later or another mirror)",
        )


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's own default (certifi's CAs), made once a process: loading the CAs costs ~20 ms,
    a tenth of a 256 MiB pull on loopback. (ssl itself is imported here: a VM created from
    an image pulled already never needs it.)"""
    import ssl

    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _final(exc: httpx.TransportError) -> bool:
    """Errors that another attempt right away would only repeat: no connection at all, or
    a server that stays silent."""
    import httpx

    return isinstance(exc, httpx.ConnectError | httpx.TimeoutException)


def _transfer(client: httpx.Client, url: str, part: _Partial, reporter: _Reporter) -> bool:
    """One request, its body appended to ``part``: True once the file is complete, False to
    ask again (the server restarted the file, or cut the transfer short)."""
    headers = {"range": f"bytes={part.size}-"} if part.size else {}
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 416 and _complete(response, part):
            return True
        if response.status_code not in (200, 206):
            raise _status_error(response, url)
        if response.status_code == 200 and part.size:
            part.restart()  # the server ignored the range: it sends the whole file again
        elif response.status_code == 206 and not _resumes(response, part):
            part.restart()
            return False
        length = response.headers.get("content-length")
        part.total = part.size + int(length) if length and length.isdigit() else None
        _check_space(part)
        for chunk, release in _body(response, client.timeout.read):
            part.write(chunk, release)
            reporter(part.size, part.total)
    return part.total is None or part.size >= part.total


def _body(
    response: httpx.Response, timeout: float | None
) -> Iterator[tuple[Chunk, Release | None]]:
    """``response``'s body, as far as the server sends it, each chunk with what releases its
    memory once hashed. httpx reads 64 KiB at a time and h11 copies each chunk twice on its
    way (256 MiB from loopback: ~195 ms); a body of known length is read from the connection
    itself after the first chunk instead (~125 ms), into a few buffers used over and over: no
    page faults for fresh memory, and the hash finds each still in the CPU's cache."""
    chunks = response.iter_raw()
    stream = _connection(response)
    if stream is None:
        for chunk in chunks:
            yield chunk, None
        return
    # h11 hands everything it read past the headers over as the first chunk (never more
    # than the body), so the rest of the body is still in the connection, untouched. Reading
    # it there leaves h11 short of the end: httpcore then closes the connection, never
    # reusing it out of step.
    first = next(chunks, b"")
    if first:
        yield first, None
    left = int(response.headers["content-length"]) - len(first)
    read_into = _reader(stream, timeout)
    spare: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    for _ in range(BUFFERS):
        spare.put(bytearray(READ))
    while left > 0:
        buffer = spare.get()  # waits while the hash is BUFFERS behind
        view = memoryview(buffer)[: min(READ, left)]
        got, error = _fill(read_into, view)
        if got:  # even before an error: what came is kept, and resumed after
            left -= got
            yield view[:got], functools.partial(spare.put, buffer)
        if error is not None:
            raise _httpx_error(error, response.request) from error
        if got < len(view):  # cut short: the caller asks for the rest
            return


def _connection(response: httpx.Response) -> httpcore.NetworkStream | None:
    """The connection under ``response``, if its body can be read there directly: HTTP/1
    with a Content-Length and no transfer coding (chunks need h11 to take them apart)."""
    import httpcore

    stream = response.extensions.get("network_stream")
    if (
        isinstance(stream, httpcore.NetworkStream)
        and response.http_version in ("HTTP/1.0", "HTTP/1.1")
        and "transfer-encoding" not in response.headers
        and response.headers.get("content-length", "").isdigit()
    ):
        return stream
    return None


def _reader(stream: httpcore.NetworkStream, timeout: float | None) -> Callable[[memoryview], int]:
    """A function that reads from ``stream`` into a buffer (0: the connection's end): straight
    from the socket with recv_into unless TLS sits in between (then the socket's bytes are
    not the body's), else through the stream's own reads."""
    sock = stream.get_extra_info("socket")
    if stream.get_extra_info("ssl_object") is None and type(sock) is socket.socket:
        sock.settimeout(timeout)
        recv_into: Callable[[memoryview], int] = sock.recv_into
        return recv_into

    def read_into(view: memoryview) -> int:
        data = stream.read(len(view), timeout=timeout)
        view[: len(data)] = data
        return len(data)

    return read_into


def _fill(read_into: Callable[[memoryview], int], view: memoryview) -> tuple[int, Exception | None]:
    """Fill ``view`` (less only at the connection's end): the bytes read, and the error that
    stopped it early, if one did."""
    import httpcore

    filled = 0
    try:
        while filled < len(view) and (got := read_into(view[filled:])):
            filled += got
    except (OSError, httpcore.NetworkError, httpcore.TimeoutException) as exc:
        return filled, exc
    return filled, None


def _httpx_error(exc: Exception, request: httpx.Request) -> httpx.TransportError:
    """The connection's error ``exc`` as httpx's own, as the rest of the pull expects it."""
    import httpcore
    import httpx

    message = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError | httpcore.TimeoutException):
        return httpx.ReadTimeout(message, request=request)
    return httpx.ReadError(message, request=request)


def _resumes(response: httpx.Response, part: _Partial) -> bool:
    """Whether a 206 carries the bytes from where ``part`` stands (bytes START-END/TOTAL)."""
    match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
    return match is not None and int(match.group(1)) == part.size


def _complete(response: httpx.Response, part: _Partial) -> bool:
    """A 416 to a range from ``part.size``: complete if the file is exactly that long (a pull
    stopped between the last byte and the rename); otherwise start over."""
    match = _UNSATISFIED_RANGE.match(response.headers.get("content-range", ""))
    if match is not None and int(match.group(1)) == part.size:
        part.total = part.size
        return True
    part.restart()
    return False


def _check_space(part: _Partial) -> None:
    if part.total is None:
        return
    free = shutil.disk_usage(part.path.parent).free
    if free < part.total - part.size:
        part.discard()
        raise _no_space(part.path.parent, part.total, part.size, free)


def _no_space(where: Path, total: int | None, done: int, free: int | None = None) -> StorageError:
    needed = f"; it needs {human_size(total - done)} more" if total is not None else ""
    has = f" ({human_size(free)} free)" if free is not None else ""
    return StorageError(
        f"not enough space in {where} for the image{needed}{has}; the partial download was removed",
        hint="free some space there, or point $VMDESK_CACHE to a disk with more room",
    )


def _status_error(response: httpx.Response, url: str) -> DownloadError:
    host = urlsplit(url).hostname or url
    code = response.status_code
    if code in (404, 410):
        return DownloadError(
            f"{host} has no file at {url} (HTTP {code})",
            hint="the image may have moved: check the URL (or update VM-Desk for a newer catalog)",
        )
    why = {401: "wants credentials", 403: "refuses access", 429: "is rate limiting"}
    hint = f"{host} has a problem of its own: try again later" if code >= 500 else "check the URL"
    reason = why.get(code, f"answered HTTP {code} {response.reason_phrase}".rstrip())
    return DownloadError(f"{host} {reason} for {url}", hint=hint)


def _transport_error(exc: Exception, url: str, host: str, timeout: float) -> DownloadError:
    import httpx

    resume = "; the next pull resumes what was downloaded"
    if isinstance(exc, httpx.TimeoutException):
        return DownloadError(
            f"{host} sent nothing for {timeout:g} s (downloading {url})",
            hint="check the network connection and try again" + resume,
        )
    if isinstance(exc, httpx.ConnectError):
        cause = _root_cause(exc)
        port = urlsplit(url).port
        where = f"{host}:{port}" if port else host
        if isinstance(cause, socket.gaierror):
            message = f"cannot find the host {host} (no network, or no such name)"
        elif isinstance(cause, ConnectionRefusedError):
            message = f"{where} refused the connection"
        else:
            message = f"cannot connect to {where}"
        return DownloadError(message, hint="check the network connection and the URL" + resume)
    return DownloadError(
        f"the connection to {host} broke off while downloading {url} ({type(exc).__name__})",
        hint="try again" + resume,
    )


def _root_cause(exc: BaseException) -> BaseException:
    """The first error in ``exc``'s chain (httpx wraps the socket's own)."""
    seen = exc
    while True:
        inner = seen.__cause__ or seen.__context__
        if inner is None:
            return seen
        seen = inner


class _Reporter:
    """Calls ``progress`` every PROGRESS_EVERY bytes, and once at the end."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.last = -PROGRESS_EVERY

    def __call__(self, done: int, total: int | None) -> None:
        if self.progress is not None and done - self.last >= PROGRESS_EVERY:
            self.last = done
            self.progress(done, total)

    def done(self, done: int, total: int | None) -> None:
        if self.progress is not None and done != self.last:
            self.progress(done, total)
