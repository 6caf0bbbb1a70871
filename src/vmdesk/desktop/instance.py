"""One app per library: the first launch listens on a control socket, a later launch hands
it a page to show and exits. The socket lives in the user's runtime folder (mode 0700), so
only this user can reach it; its name is derived from the library's path."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from vmdesk.core.errors import ProtocolError

HANDOVER_TIMEOUT = 5.0


def runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    temp = Path(tempfile.gettempdir()) / f"vmdesk-{os.getuid()}"
    folder = Path(base) / "vmdesk" if base else temp
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def socket_path(library_root: Path) -> Path:
    key = hashlib.sha256(str(library_root.resolve()).encode()).hexdigest()[:16]
    return runtime_dir() / f"app-{key}.sock"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Two launches at once: the second waits until the first listens (or gave up)."""
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def hand_over(path: Path, request: dict[str, str]) -> dict[str, str] | None:
    """Send ``request`` to the running app; None when no app answers there."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(HANDOVER_TIMEOUT)
            conn.connect(str(path))
            conn.sendall(json.dumps(request).encode() + b"\n")
            reply = conn.makefile("rb").readline()
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    except OSError as exc:
        raise ProtocolError(
            f"the running VM-Desk app did not answer: {exc}",
            hint="quit it from its tray icon (or kill it), then launch again",
        ) from None
    answer: dict[str, str] = json.loads(reply or b"{}")
    return answer


class Listener:
    """The control socket of the running app: each line is a JSON request, answered by
    ``handle`` (called in the listener's thread)."""

    def __init__(self, path: Path, handle: Callable[[dict[str, str]], dict[str, str]]) -> None:
        self.path = path
        self.handle = handle
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def start(self) -> None:
        self.path.unlink(missing_ok=True)  # stale: hand_over found nobody behind it
        self.sock.bind(str(self.path))
        self.sock.listen(8)
        threading.Thread(target=self._serve, name="app-control", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(HANDOVER_TIMEOUT)
        try:
            line = conn.makefile("rb").readline()
            request = json.loads(line)
            reply = self.handle(request) if isinstance(request, dict) else {"error": "bad"}
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except (OSError, ValueError):
            pass  # a client that went away or sent nonsense: nothing to answer

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


def claim(
    library_root: Path, request: dict[str, str], handle: Callable[[dict[str, str]], dict[str, str]]
) -> Listener | dict[str, str]:
    """The listener when this launch is the app; the running app's reply when it is not."""
    path = socket_path(library_root)
    with _locked(path):
        answer = hand_over(path, request)
        if answer is not None:
            return answer
        listener = Listener(path, handle)
        listener.start()
        return listener
