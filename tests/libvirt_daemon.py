"""A real libvirtd (and virtlogd) for the tests, an sshd on a loopback port that leads to
it as a second host (qemu+ssh://), and a second daemon of its own: a session libvirtd of
an unprivileged user, reached through its socket (qemu+unix:///session?socket=...).

libvirt 9.0 as root in these sandboxes needs QEMU run as root without a security driver
(its qemu.conf), the `libvirt-qemu` user and `kvm`/`libvirt-qemu` groups its driver looks
up, and virtlogd running first. The config is written only where none exists or where it
is the one these tests wrote, so a machine's own libvirt setup is never overwritten.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

QEMU_CONF = Path("/etc/libvirt/qemu.conf")
MARK = "# written by VM-Desk's tests (tests/libvirt_daemon.py)"
SETTINGS = ('user = "root"', 'group = "root"', 'security_driver = "none"',
            'swtpm_user = "root"', 'swtpm_group = "root"')  # fmt: skip
SOCKET = Path("/run/libvirt/libvirt-sock")
SYSTEM = "qemu:///system"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def _answers(uri: str = SYSTEM) -> bool:
    return _run("virsh", "-c", uri, "version").returncode == 0


def _configure() -> None:
    for folder in ("/var/log/libvirt/qemu", "/var/lib/libvirt/images", "/run/libvirt"):
        Path(folder).mkdir(parents=True, exist_ok=True)
    if QEMU_CONF.exists() and MARK not in QEMU_CONF.read_text():
        text = QEMU_CONF.read_text()
        missing = [s for s in SETTINGS if s not in text]
        assert not missing, (
            f"{QEMU_CONF} is this machine's own and lacks {missing}: the tests run QEMU as "
            "root without a security driver; add those lines or run the tests elsewhere"
        )
        return
    QEMU_CONF.parent.mkdir(parents=True, exist_ok=True)
    QEMU_CONF.write_text("\n".join((MARK, *SETTINGS)) + "\n")
    for group in ("kvm", "libvirt-qemu", "libvirt"):
        if _run("getent", "group", group).returncode != 0:
            _run("groupadd", "--system", group)
    if _run("getent", "passwd", "libvirt-qemu").returncode != 0:
        _run("useradd", "--system", "--gid", "libvirt-qemu", "--home-dir", "/var/lib/libvirt",
             "--shell", "/usr/sbin/nologin", "libvirt-qemu")  # fmt: skip


def ensure_running() -> str:
    """qemu:///system, answering: started here when it was not running."""
    if os.geteuid() != 0:
        raise AssertionError("the libvirt tests run libvirtd as root: run them as root")
    if _answers():
        return SYSTEM
    _configure()
    if _run("pgrep", "-x", "virtlogd").returncode != 0:
        done = _run("virtlogd", "--daemon")
        assert done.returncode == 0, done.stderr
    done = _run("libvirtd", "--daemon")
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 30
    while not _answers():
        assert time.monotonic() < deadline, "libvirtd did not answer within 30 s"
        time.sleep(0.2)
    return SYSTEM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sshd:
    """An sshd of the tests' own on 127.0.0.1, letting in root with a throwaway key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.key = root / "id_ed25519"
        host_key = root / "host_ed25519"
        for path in (self.key, host_key):
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path))
        self.authorized = root / "authorized_keys"
        shutil.copy(f"{self.key}.pub", self.authorized)
        self.port = free_port()
        config = root / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"AuthorizedKeysFile {self.authorized}\nPermitRootLogin prohibit-password\n"
            f"PasswordAuthentication no\nStrictModes no\nPidFile {root / 'sshd.pid'}\n"
            "UsePAM no\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        self.process = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL, stderr=(root / "sshd.log").open("w"),
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            assert self.process.poll() is None, (root / "sshd.log").read_text()
            assert time.monotonic() < deadline, "sshd did not listen within 15 s"
            time.sleep(0.1)

    @property
    def uri(self) -> str:
        return f"qemu+ssh://root@127.0.0.1:{self.port}/system?keyfile={self.key}&no_verify=1"

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class SessionDaemon:
    """A second libvirt daemon: user USER's session libvirtd, with a runtime directory of
    its own in /tmp (the user can't reach into root's pytest folders) and a 'vmdesk'
    directory pool in the user's home (a session daemon's pool is the user's to define:
    VM-Desk knows no place for one)."""

    USER = "vmdesk-lab2"

    def __init__(self) -> None:
        if _run("getent", "passwd", self.USER).returncode != 0:
            done = _run("useradd", "--create-home", "--shell", "/bin/sh", self.USER)
            assert done.returncode == 0, done.stderr
        self.home = Path(_run("getent", "passwd", self.USER).stdout.split(":")[5])
        root = Path(tempfile.mkdtemp(prefix="vmdesk-lab2-"))
        self.root = self.runtime = root
        shutil.chown(root, self.USER)
        env = {"PATH": os.environ["PATH"], "HOME": str(self.home),
               "XDG_RUNTIME_DIR": str(self.runtime)}  # fmt: skip
        self.process = subprocess.Popen(
            ["runuser", "-u", self.USER, "--", "libvirtd", "--timeout", "0"], env=env,
            stdout=subprocess.DEVNULL, stderr=(root / "libvirtd.log").open("w"),
        )  # fmt: skip
        self.uri = f"qemu+unix:///session?socket={self.runtime}/libvirt/libvirt-sock"
        deadline = time.monotonic() + 30
        while not _answers(self.uri):
            assert self.process.poll() is None, (root / "libvirtd.log").read_text()
            assert time.monotonic() < deadline, "the session libvirtd did not answer in 30 s"
            time.sleep(0.2)
        pool = self.home / "vmdesk-pool"
        pool.mkdir(exist_ok=True)
        shutil.chown(pool, self.USER)
        for args in (("pool-define-as", "vmdesk", "dir", "--target", str(pool)),
                     ("pool-start", "vmdesk")):  # fmt: skip
            done = _run("virsh", "-c", self.uri, *args)
            assert done.returncode == 0 or "already" in done.stderr, done.stderr

    def virsh(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run("virsh", "-c", self.uri, *args)

    def close(self) -> None:
        for name in self.virsh("list", "--all", "--name").stdout.split():
            self.virsh("destroy", name)
            self.virsh("undefine", name, "--nvram")
        for line in self.virsh("vol-list", "vmdesk").stdout.splitlines()[2:]:
            if line.strip():
                self.virsh("vol-delete", line.split()[0], "--pool", "vmdesk")
        self.process.terminate()
        self.process.wait(15)
        shutil.rmtree(self.root, ignore_errors=True)
