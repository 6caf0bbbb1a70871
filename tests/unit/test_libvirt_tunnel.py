"""The ssh command that forwards a host's VNC socket: the URI's user, port, key and host-key
choice, never a shared connection, and a `sleep` that ends it once the display closes."""

from __future__ import annotations

from vmdesk.engines.libvirt import tunnel


def test_the_forward_takes_what_the_uri_says() -> None:
    uri = "qemu+ssh://me@lab.example:2222/system?keyfile=/k/id&no_verify=1"
    assert tunnel.ssh_argv(uri, "/tmp/t/s", "/var/lib/libvirt/qemu/d/vnc.sock") == [
        "ssh", "-T", "-e", "none", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
        "-o", "ControlPath=none", "-p", "2222", "-l", "me", "-i", "/k/id",
        "-o", "StrictHostKeyChecking=no",
        "-L", "/tmp/t/s:/var/lib/libvirt/qemu/d/vnc.sock", "--", "lab.example", "sleep", "15",
    ]  # fmt: skip


def test_a_plain_uri_adds_nothing_and_its_own_ssh_command_is_used() -> None:
    argv = tunnel.ssh_argv("qemu+ssh://lab/system?command=/opt/ssh", "/l", "/r")
    assert argv[0] == "/opt/ssh"
    assert "-p" not in argv and "-l" not in argv and "-i" not in argv
    assert argv[-5:] == ["/l:/r", "--", "lab", "sleep", "15"]
